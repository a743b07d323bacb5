"""jnet: low-resolution input, high-resolution mask segmentation for cheap hardware (J-Net)."""

from jnet.heads import create_head, list_heads
from jnet.model import JNet
from jnet.models import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["JNet", "__version__", "create_head", "create_model", "list_heads", "list_models", "register_model"]
