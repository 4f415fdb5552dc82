"""Prompt templates as the catalog hands them over (a partitioned folder of ``.txt`` files)."""

from __future__ import annotations

from collections.abc import Callable


def read_templates(prompt_templates: dict[str, Callable[[], str]]) -> dict[str, str]:
    """Template text by name (file name without ``.txt``)."""
    return {name.removesuffix(".txt"): load() for name, load in prompt_templates.items()}
