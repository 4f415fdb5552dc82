"""Loading, deriving and saving the project's language models."""

from fsku_kedro.models.bundle import ModelBundle

__all__ = ["ModelBundle"]
