"""jnet: low-resolution input, high-resolution mask segmentation for cheap hardware (J-Net)."""

from jnet._version import __version__
from jnet.heads import create_head, list_heads
from jnet.model import JNet
from jnet.models import create_model, list_models, register_model
from jnet.training.checkpoint import load_checkpoint

__all__ = [
    "JNet",
    "__version__",
    "create_head",
    "create_model",
    "list_heads",
    "list_models",
    "load_checkpoint",
    "register_model",
]
