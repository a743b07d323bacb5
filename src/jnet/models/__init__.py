"""Backbones (the model zoo) and their registry."""

from jnet.models import elunet, unet, unet3plus  # noqa: F401  (registers the models)
from jnet.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
