"""Backbones (the model zoo) and their registry."""

from jnet.models import egeunet, elunet, malunet, unet, unet3plus, unext  # noqa: F401  (registers the models)
from jnet.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
