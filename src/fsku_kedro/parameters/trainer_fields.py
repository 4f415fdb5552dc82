"""Blocks that pass straight into a transformers / TRL config class: their extra keys must be fields
of that class. The class is imported only when a block carries a key beyond the declared ones."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any, ClassVar

from pydantic import ConfigDict, model_validator

from fsku_kedro.parameters.base import Settings


class ConfigClassSettings(Settings):
    """Declared fields hold the project's defaults; any other key must be a field of ``config_class``."""

    model_config = ConfigDict(extra="allow", frozen=True, validate_default=True)
    config_class: ClassVar[str] = ""  # "module:Class"

    @model_validator(mode="after")
    def _extras_are_config_fields(self) -> ConfigClassSettings:
        extras = sorted(self.model_extra or {})
        if not extras:
            return self
        module, name = self.config_class.split(":")
        known = {field.name for field in dataclasses.fields(getattr(importlib.import_module(module), name))}
        problems = []
        for key in (key for key in extras if key not in known):
            near = difflib.get_close_matches(key, sorted(known | set(type(self).model_fields)), n=1, cutoff=0.6)
            problems.append(f"unknown key {key!r}, not a field of {name}." + (f" Did you mean {near[0]!r}?" if near else ""))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def as_kwargs(self) -> dict[str, Any]:
        """Every declared and extra key, ready for ``config_class(**kwargs)``."""
        return self.model_dump()
