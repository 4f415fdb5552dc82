"""The base of every settings model: unknown keys are errors, values are checked, objects are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """A block of parameters. A key the model does not declare is refused, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
