"""Deriving a student from a pretrained model: depth pruning (evenly spaced layers, or the most
influential ones measured on calibration text, ShortGPT) and width pruning (the most active MLP
channels, as Minitron prunes width)."""

from __future__ import annotations

import copy
import logging
from typing import Any

from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.pruning import (
    block_influence,
    depth_prune,
    evenly_spaced_layers,
    influential_layers,
    mlp_channel_gram,
    mlp_channel_importance,
    width_prune,
)

logger = logging.getLogger(__name__)


def select_layers(model: Any, tokenizer: Any, keep: int, selection: str, passages: list[str]) -> list[int]:
    """The decoder layers a depth-pruned copy keeps: ``evenly_spaced`` (first and last kept), or the
    ``block_influence`` ones measured on ``passages``."""
    total = model.config.num_hidden_layers
    if selection == "evenly_spaced":
        return evenly_spaced_layers(total, keep)
    if selection != "block_influence":
        raise ValueError(f"unknown layer selection {selection!r}; choose evenly_spaced or block_influence")
    influence = block_influence(model, tokenizer, passages)
    layers = influential_layers(influence, keep)
    logger.info("Block influence per layer: %s; keeping %s", [round(v, 4) for v in influence], layers)
    return layers


def student_name(source_name: str, layers: int | None, selection: str, mlp_channels: int | None,
                 compensated: bool = False) -> str:
    """The name a derived student is reported by: the source's, with its depth and width (``c`` when the
    pruned MLPs were refitted by least squares)."""
    name = source_name
    if layers is not None:
        name += f"-{'bi' if selection == 'block_influence' else 'depth'}{layers}"
    if mlp_channels is not None:
        name += f"-mlp{mlp_channels}{'c' if compensated else ''}"
    return name


def derive(source: ModelBundle, passages: list[str], layers: int | None, selection: str,
           mlp_channels: int | None, compensation_damping: float | None = None) -> ModelBundle:
    """A copy of ``source`` cut to ``layers`` decoder layers (chosen by ``selection``) when given, then
    to ``mlp_channels`` MLP channels a layer when given (the most active on ``passages``; with
    ``compensation_damping``, the kept ``down_proj`` columns refitted by ridge least squares on the same
    passages). Keeping every layer and channel gives the source's own model under the student's name;
    ``source`` is never changed."""
    compensated = compensation_damping is not None
    name = student_name(source.name, layers, selection, mlp_channels, compensated)
    total = source.model.config.num_hidden_layers
    if layers is not None and layers > total:
        raise ValueError(f"cannot keep {layers} layers of {source.name}, which has {total}")
    if mlp_channels is not None and mlp_channels > source.model.config.intermediate_size:
        raise ValueError(f"cannot keep {mlp_channels} MLP channels of {source.name}, which has "
                         f"{source.model.config.intermediate_size}")
    cut_depth = layers is not None and layers < total
    if ((cut_depth and selection == "block_influence") or mlp_channels is not None) and not passages:
        raise ValueError("block influence and MLP channel importance need calibration passages; the chunks are empty")
    if not cut_depth and mlp_channels is None:
        return ModelBundle(model=source.model, tokenizer=source.tokenizer, name=name, path=source.path)
    model = copy.deepcopy(source.model)
    if cut_depth:
        depth_prune(model, select_layers(model, source.tokenizer, layers, selection, passages))
    if mlp_channels is not None:
        importance = mlp_channel_importance(model, source.tokenizer, passages)
        grams = mlp_channel_gram(model, source.tokenizer, passages) if compensated else None
        width_prune(model, importance, mlp_channels, grams, compensation_damping or 0.0)
    return ModelBundle(model=model, tokenizer=source.tokenizer, name=name, path=None)
