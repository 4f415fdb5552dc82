"""What the chunked loss reads from a model: its final hidden states and its LM head's weight,
also when DeepSpeed ZeRO-3 partitions the parameters or FSDP2 shards them.

Hidden states come from the wrapped model's own forward (a hook on the decoder keeps its output and
the head projects one position only), so the wrappers' hooks gather the parameters as they do in
training. The head's weight is read in ``head_weight``:

- ZeRO-3 keeps a parameter partitioned outside its module's forward; the head is gathered for
  reading with ``deepspeed.zero.GatheredParameters``. The chunked loss forms the head's gradient
  itself, which ZeRO-3 cannot receive for a partitioned parameter, so a trainable head is refused
  (LoRA leaves the head frozen; ``distillation.launch.launch_problems`` refuses the rest earlier).
- FSDP2 leaves the root module's parameters unsharded after its forward; a still-sharded head (a
  ``DTensor``) is gathered with ``full_tensor()``, which carries its gradient back to the shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def causal_lm(model: Any) -> Any:
    """The bare causal LM inside trainer, DeepSpeed, FSDP and PEFT wrappers (PEFT layers stay active)."""
    model = getattr(model, "module", model)
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def final_hidden_states(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The decoder's last hidden states ``[B, T, H]``, from a forward of ``model`` as it is wrapped."""
    lm = causal_lm(model)
    decoder = getattr(lm, lm.base_model_prefix)
    kept: list[torch.Tensor] = []

    def keep(module, args, output):
        kept.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    handle = decoder.register_forward_hook(keep)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1)
    finally:
        handle.remove()
    return kept[-1]


def is_partitioned(weight: torch.Tensor) -> bool:
    """A DeepSpeed ZeRO-3 parameter (it carries a ``ds_id``)."""
    return hasattr(weight, "ds_id")


def head_rows(model: Any) -> int:
    """The LM head's number of rows (its full size, also when partitioned)."""
    weight = causal_lm(model).get_output_embeddings().weight
    return int(weight.ds_shape[0]) if is_partitioned(weight) else int(weight.shape[0])


@contextmanager
def head_weight(model: Any) -> Iterator[torch.Tensor]:
    """The LM head's full ``[V, H]`` weight of ``model`` (wrapped or not) while the context is open."""
    weight = causal_lm(model).get_output_embeddings().weight
    if is_partitioned(weight):
        if weight.requires_grad:
            raise RuntimeError(
                "the LM head is trainable under DeepSpeed ZeRO-3: the chunked distillation loss cannot "
                "return its gradient to a partitioned parameter; train LoRA adapters without lm_head, "
                "or use FSDP (conf/accelerate/fsdp.yaml)"
            )
        import deepspeed

        with deepspeed.zero.GatheredParameters([weight], modifier_rank=None):
            yield weight
        return
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch builds without distributed
        DTensor = ()  # noqa: N806
    yield weight.full_tensor() if isinstance(weight, DTensor) else weight
