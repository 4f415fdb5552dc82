"""A causal LM with its tokenizer, the unit that crosses the catalog."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from fsku_kedro.hashing import json_hash


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


def weights_key(name: str, model: Any) -> str:
    """A model's key: its name, dtype, hidden size and a sample of its weights (64 strided values of
    every tensor), so that a retrained or merged model under the same name gets another. Its folder
    is left out: a merged student saved again under a new version of the same run is the same model."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for parameter in model.parameters():
            flat = parameter.detach().reshape(-1)
            digest.update(flat[:: max(1, flat.numel() // 64)].float().cpu().numpy().tobytes())
    dtype = str(next(model.parameters()).dtype)
    return json_hash([name, dtype, int(model.config.hidden_size), digest.hexdigest()], length=16)
