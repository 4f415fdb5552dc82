"""LoRA adapters as data, and merging them into the student with PEFT."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from fsku_kedro.models.bundle import ModelBundle


@dataclass
class LoraAdapter:
    """A trained adapter: its PEFT configuration and its weights (safetensors on disk)."""

    config: PeftConfig
    weights: dict[str, torch.Tensor]


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def save_adapter(directory: Path, adapter: LoraAdapter) -> None:
    """``adapter_config.json`` and ``adapter_model.safetensors`` into ``directory``, as PEFT writes them."""
    from safetensors.torch import save_file

    adapter.config.save_pretrained(str(directory))
    save_file(adapter.weights, str(directory / ADAPTER_WEIGHTS))


def load_adapter(directory: Path) -> LoraAdapter:
    from safetensors.torch import load_file

    return LoraAdapter(config=PeftConfig.from_pretrained(str(directory)), weights=load_file(str(directory / ADAPTER_WEIGHTS)))


def extract_adapter(model: PeftModel) -> LoraAdapter:
    """The active adapter of a trained PEFT model, detached and on CPU."""
    if not isinstance(model, PeftModel):
        raise TypeError(f"expected a PEFT model, got {type(model).__name__}")
    name = model.active_adapter
    weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in get_peft_model_state_dict(model, adapter_name=name).items()}
    return LoraAdapter(config=model.peft_config[name], weights=weights)


def load_adapter_weights(peft_model: PeftModel, weights: dict[str, torch.Tensor], what: str) -> None:
    """Put ``weights`` into ``peft_model``'s adapter; weights that do not fit (``what`` names the model)
    are refused."""
    result = set_peft_model_state_dict(peft_model, weights)
    missing_lora = [k for k in result.missing_keys if "lora_" in k]
    if missing_lora or result.unexpected_keys:
        raise ValueError(
            f"the adapter does not fit {what}: {len(missing_lora)} LoRA weights missing "
            f"(e.g. {missing_lora[:2]}), {len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:2]})"
        )


def merge_adapter(base: ModelBundle, adapter: LoraAdapter, name: str) -> ModelBundle:
    """Apply ``adapter`` to ``base`` and fold it into the weights (``merge_and_unload``).

    ``base.model`` itself becomes the merged model (no second copy of the weights is made).
    """
    peft_model = get_peft_model(base.model, adapter.config)
    load_adapter_weights(peft_model, adapter.weights, base.name)
    merged = peft_model.merge_and_unload()
    return ModelBundle(model=merged, tokenizer=base.tokenizer, name=name, path=None)
