"""Text generation settings shared by every stage that generates: sampling, backend, batching."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from fsku_kedro.parameters.base import Settings


class SamplingSettings(Settings):
    """How each completion is decoded."""

    max_new_tokens: PositiveInt = 128
    do_sample: bool = False
    temperature: PositiveFloat = 1.0
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0


# vLLM's CPU thread binding: "all" (every core this process may use, split between tensor-parallel ranks),
# "auto" (vLLM's own choice, which leaves one core to its scheduler), or core ids per rank ("0-3", "0,2|1,3").
THREADS_BIND = r"^(all|auto|\d+(-\d+)?(,\d+(-\d+)?)*(\|\d+(-\d+)?(,\d+(-\d+)?)*)*)$"


class VLLMSettings(Settings):
    """How the vLLM engine is started (``backend: vllm``). The KV cache is sized by the device the engine
    runs on: a share of the GPU's memory on a GPU, GiB of RAM on a CPU."""

    tensor_parallel_size: PositiveInt = 1
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0)  # GPU: share for weights, activations, KV cache
    cpu_kv_cache_gib: PositiveInt = 2  # CPU: RAM for the KV cache (vLLM reads whole GiB)
    cpu_threads_bind: str = Field("all", pattern=THREADS_BIND)
    enforce_eager: bool | None = None  # None: eager on a CPU (no 85 s compile), compiled graphs on a GPU
    enable_prefix_caching: bool = True  # shared prompt heads (option rotations, one template) run once
    # Tokens per KV-cache block, the unit the prefix cache shares. None: 32 on a CPU (the smallest its
    # attention takes; vLLM's own 128 shares less of a question's rotations), vLLM's own on a GPU.
    block_size: PositiveInt | None = None
    max_model_len: PositiveInt | None = None  # None: the model's own
    lora_path: str | None = None  # a PEFT adapter served on top of the model

    @model_validator(mode="after")
    def _kv_cache_fits(self) -> VLLMSettings:
        total = physical_memory_gib()
        if total is not None and self.cpu_kv_cache_gib >= total:
            raise ValueError(f"cpu_kv_cache_gib {self.cpu_kv_cache_gib} is not below this machine's "
                             f"{total:.1f} GiB of RAM; set it to a few GiB (2 holds about 75,000 tokens of "
                             "a 1.5B Qwen2.5)")
        return self


def physical_memory_gib() -> float | None:
    """The machine's RAM in GiB, where the system says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


class BackendSettings(Settings):
    """Which engine generates and scores, and how it batches."""

    backend: Literal["transformers", "vllm"] = "transformers"
    batch_size: PositiveInt = 8
    # transformers only: "static" pre-allocates the KV cache; None keeps transformers' dynamic cache.
    cache_implementation: Literal["static", "dynamic", "offloaded", "offloaded_static"] | None = None
    vllm: VLLMSettings = VLLMSettings()


class GenerationSettings(BackendSettings, SamplingSettings):
    """An engine and a decoding rule in one block (``generation:`` in several stages)."""

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(**{name: getattr(self, name) for name in SamplingSettings.model_fields})


class RoleGenerationSettings(GenerationSettings):
    """Generation of teacher or student responses over the prompt set (resumable, shardable)."""

    batch_size: PositiveInt = 16
    max_new_tokens: PositiveInt = 64
    cache_implementation: Literal["static", "dynamic", "offloaded", "offloaded_static"] | None = "static"
    batches_per_flush: PositiveInt = 1
    shard_index: NonNegativeInt = 0
    num_shards: PositiveInt = 1
    system_prompt: str | None = None

    @model_validator(mode="after")
    def _shard_in_range(self) -> RoleGenerationSettings:
        if self.shard_index >= self.num_shards:
            raise ValueError(f"shard_index {self.shard_index} must be below num_shards {self.num_shards}")
        return self


class GeneratorSettings(Settings):
    """A generating role (``teacher:`` or ``student:``)."""

    generation: RoleGenerationSettings = RoleGenerationSettings()
