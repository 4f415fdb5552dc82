"""A causal LM with its tokenizer, the unit that crosses the catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ModelBundle:
    """A causal language model, its tokenizer and the name it is known by in reports."""

    model: Any
    tokenizer: Any
    name: str
    path: str | None = None  # a directory holding the weights, for backends that load by path (vLLM)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())
