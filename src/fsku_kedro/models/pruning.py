"""Pruning a teacher into a smaller student: in depth (some of its decoder layers kept, chosen by block
influence) or in width (some of each MLP's intermediate channels kept, chosen by activation importance,
optionally with the kept ``down_proj`` columns refitted by least squares on calibration activations)."""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


def _decoder_layers(model: Any, what: str) -> torch.nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no model.layers; {what} supports decoder-only LMs")
    return layers


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """Indices of ``keep`` layers spread over ``total``, always keeping the first and the last."""
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers")
    if keep == 1:
        return [0]
    step = (total - 1) / (keep - 1)
    return sorted({round(i * step) for i in range(keep)})


def depth_prune(model: Any, keep_layers: list[int]) -> Any:
    """Keep only ``keep_layers`` of a decoder-only model, in place, and fix its config.

    Works for transformers models whose decoder blocks live in ``model.model.layers``
    (Llama, Qwen2, Mistral, Gemma families).
    """
    layers = _decoder_layers(model, "depth pruning")
    total = len(layers)
    if not keep_layers or any(not 0 <= i < total for i in keep_layers):
        raise ValueError(f"layer indices {keep_layers} out of range for a {total}-layer model")
    kept = torch.nn.ModuleList([layers[i] for i in sorted(set(keep_layers))])
    for new_index, layer in enumerate(kept):
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = new_index  # the KV cache is indexed by position in the stack
    model.model.layers = kept
    config = model.config
    config.num_hidden_layers = len(kept)
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        config.layer_types = [layer_types[i] for i in sorted(set(keep_layers))]
    # Which layers of the original stack remain (saved in config.json), for training next to the cuts.
    previous = getattr(config, "depth_kept_layers", None) or list(range(total))
    config.depth_kept_layers = [previous[i] for i in sorted(set(keep_layers))]
    config.depth_pruned_from = getattr(config, "depth_pruned_from", None) or total
    logger.info("Depth-pruned %d -> %d layers (kept %s)", total, len(kept), sorted(set(keep_layers)))
    return model


def next_to_removed(config: Any) -> list[int]:
    """The layers (indices in the pruned stack) on either side of each removed block, from the record
    ``depth_prune`` leaves in the config; every layer when the model was not pruned."""
    kept = getattr(config, "depth_kept_layers", None)
    if not kept:
        return list(range(config.num_hidden_layers))
    total = config.depth_pruned_from
    chosen = set()
    for index, original in enumerate(kept):
        before = kept[index - 1] if index > 0 else -1
        after = kept[index + 1] if index + 1 < len(kept) else total
        if original - before > 1 or after - original > 1:
            chosen.add(index)
    return sorted(chosen)


def _calibration_passes(model: Any, tokenizer: Any, texts: list[str], max_tokens: int, handles: list[Any],
                        min_tokens: int) -> tuple[int, int]:
    """Runs ``model`` on each text of at least ``min_tokens`` tokens (cut to ``max_tokens``) while the hooks
    behind ``handles`` measure, removes them, and returns how many texts and tokens ran."""
    texts_run = tokens_run = 0
    model.eval()
    try:
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)["input_ids"]
            if ids.shape[1] < min_tokens:
                continue
            with torch.no_grad():
                model(input_ids=ids)
            texts_run, tokens_run = texts_run + 1, tokens_run + ids.shape[1]
    finally:
        for handle in handles:
            handle.remove()
    return texts_run, tokens_run


def block_influence(model: Any, tokenizer: Any, texts: list[str], max_tokens: int = 256) -> list[float]:
    """ShortGPT's block influence of every decoder layer: 1 - cos(x_in, x_out) between the hidden
    states entering and leaving the layer, averaged over the tokens of ``texts``. A layer whose output
    is nearly its input changes little and is the first to drop."""
    layers = _decoder_layers(model, "block influence")
    sums = [0.0] * len(layers)

    def measure(index: int):
        def hook(module, args, kwargs, output):
            entering = (args[0] if args else kwargs["hidden_states"])[0].float()
            leaving = (output[0] if isinstance(output, tuple) else output)[0].float()
            sums[index] += float((1 - torch.nn.functional.cosine_similarity(entering, leaving, dim=-1)).sum())
        return hook

    handles = [layer.register_forward_hook(measure(i), with_kwargs=True) for i, layer in enumerate(layers)]
    _, count = _calibration_passes(model, tokenizer, texts, max_tokens, handles, min_tokens=2)
    if not count:
        raise ValueError("block influence needs calibration text of at least two tokens")
    return [value / count for value in sums]


def influential_layers(influence: list[float], keep: int) -> list[int]:
    """The ``keep`` layers of highest block influence, in order."""
    if not 1 <= keep <= len(influence):
        raise ValueError(f"cannot keep {keep} of {len(influence)} layers")
    ranked = sorted(range(len(influence)), key=lambda i: (-influence[i], i))
    return sorted(ranked[:keep])


def mlp_channel_importance(model: Any, tokenizer: Any, texts: list[str], max_tokens: int = 256) -> list[torch.Tensor]:
    """Minitron's activation importance of every MLP intermediate channel, per decoder layer: the L2 norm
    over a text's tokens of the channel's activation (the input of ``down_proj``), averaged over the
    texts. A channel that stays near zero on real text contributes little and is the first to drop."""
    layers = _decoder_layers(model, "width pruning")
    sums: list[torch.Tensor | None] = [None] * len(layers)

    def measure(index: int):
        def hook(module, args):
            norms = args[0][0].float().norm(dim=0)  # [channels]: one text's tokens
            sums[index] = norms if sums[index] is None else sums[index] + norms
        return hook

    handles = [layer.mlp.down_proj.register_forward_pre_hook(measure(i)) for i, layer in enumerate(layers)]
    count, _ = _calibration_passes(model, tokenizer, texts, max_tokens, handles, min_tokens=1)
    if not count:
        raise ValueError("MLP channel importance needs calibration text")
    return [total / count for total in sums]


def mlp_channel_gram(model: Any, tokenizer: Any, texts: list[str], max_tokens: int = 256) -> list[torch.Tensor]:
    """Per decoder layer, the Gram matrix ``X^T X`` of its MLP intermediate activations (the input of
    ``down_proj``, one row a token) summed over the tokens of ``texts``, in float32: what a least-squares
    compensation of the pruned ``down_proj`` needs."""
    layers = _decoder_layers(model, "width pruning")
    grams: list[torch.Tensor | None] = [None] * len(layers)

    def measure(index: int):
        def hook(module, args):
            activations = args[0].reshape(-1, args[0].shape[-1]).float()
            product = activations.T @ activations
            grams[index] = product if grams[index] is None else grams[index].add_(product)
        return hook

    handles = [layer.mlp.down_proj.register_forward_pre_hook(measure(i)) for i, layer in enumerate(layers)]
    _, tokens = _calibration_passes(model, tokenizer, texts, max_tokens, handles, min_tokens=1)
    if not tokens:
        raise ValueError("MLP compensation needs calibration text")
    logger.info("Measured MLP activation Gram matrices on %d tokens", tokens)
    return grams


def compensated_down_proj(weight: torch.Tensor, gram: torch.Tensor, keep: torch.Tensor,
                          damping: float) -> torch.Tensor:
    """The columns ``keep`` of ``down_proj``'s ``weight`` (out x channels), refitted so that the kept
    channels best reproduce the whole layer's output on the calibration tokens whose Gram matrix is
    ``gram``: ridge least squares pulled towards the original columns, ``W_k + W_d G_dk (G_kk + l I)^-1``
    with ``l = damping`` times the mean of ``diag(G_kk)``. Channels whose activations are a combination
    of kept ones are absorbed exactly; with ``damping`` large the columns stay as they were."""
    dropped = torch.ones(weight.shape[1], dtype=torch.bool)
    dropped[keep.cpu()] = False
    kept_index, dropped_index = keep.cpu(), torch.nonzero(dropped).flatten()
    if not len(dropped_index):
        return weight.detach()[:, keep].clone()
    original, gram = weight.detach().cpu().double(), gram.double()
    g_kk = gram[kept_index][:, kept_index]
    ridge = damping * float(torch.diagonal(g_kk).mean().clamp_min(1e-12))
    g_kk += ridge * torch.eye(len(kept_index), dtype=torch.float64)
    # (G_kk + l I) Z = G_kd W_d^T, then W'_k = W_k + Z^T
    correction = torch.linalg.solve(g_kk, gram[kept_index][:, dropped_index] @ original[:, dropped_index].T)
    refitted = original[:, kept_index] + correction.T
    return refitted.to(device=weight.device, dtype=weight.dtype)


def _rows(linear: torch.nn.Linear, index: torch.Tensor) -> torch.nn.Linear:
    kept = torch.nn.Linear(linear.in_features, len(index), bias=linear.bias is not None,
                           device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        kept.weight.copy_(linear.weight[index])
        if linear.bias is not None:
            kept.bias.copy_(linear.bias[index])
    return kept


def _columns(linear: torch.nn.Linear, index: torch.Tensor) -> torch.nn.Linear:
    kept = torch.nn.Linear(len(index), linear.out_features, bias=linear.bias is not None,
                           device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        kept.weight.copy_(linear.weight[:, index])
        if linear.bias is not None:
            kept.bias.copy_(linear.bias)
    return kept


def width_prune(model: Any, importance: list[torch.Tensor], keep: int, grams: list[torch.Tensor] | None = None,
                damping: float = 0.01) -> Any:
    """Keep, in place, the ``keep`` most important intermediate channels of every layer's gated MLP
    (``gate_proj`` and ``up_proj`` rows, ``down_proj`` columns) and fix the config; every layer keeps
    the same number, as the config holds one intermediate size. With ``grams`` (``mlp_channel_gram``),
    the kept ``down_proj`` columns are refitted by least squares to make up for the dropped ones."""
    layers = _decoder_layers(model, "width pruning")
    total = model.config.intermediate_size
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} MLP channels")
    if len(importance) != len(layers):
        raise ValueError(f"{len(importance)} importance vectors for {len(layers)} layers")
    if grams is not None and len(grams) != len(layers):
        raise ValueError(f"{len(grams)} Gram matrices for {len(layers)} layers")
    for number, (layer, scores) in enumerate(zip(layers, importance)):
        index = torch.sort(torch.topk(scores, keep).indices).values.to(layer.mlp.down_proj.weight.device)
        mlp = layer.mlp
        down = _columns(mlp.down_proj, index)
        if grams is not None:
            with torch.no_grad():
                down.weight.copy_(compensated_down_proj(mlp.down_proj.weight, grams[number], index, damping))
        mlp.gate_proj, mlp.up_proj, mlp.down_proj = _rows(mlp.gate_proj, index), _rows(mlp.up_proj, index), down
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = keep
    model.config.intermediate_size = keep
    model.config.width_pruned_from = getattr(model.config, "width_pruned_from", None) or total
    logger.info("Width-pruned the MLPs from %d to %d channels per layer%s", total, keep,
                ", down_proj refitted by least squares" if grams is not None else "")
    return model
