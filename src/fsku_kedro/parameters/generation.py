"""Text generation settings shared by every stage that generates: sampling, backend, batching."""

from __future__ import annotations

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


class BackendSettings(Settings):
    """Which engine generates and how it batches."""

    backend: Literal["transformers", "vllm"] = "transformers"
    batch_size: PositiveInt = 8
    # transformers only: "static" pre-allocates the KV cache; None keeps transformers' dynamic cache.
    cache_implementation: Literal["static", "dynamic", "offloaded", "offloaded_static"] | None = None
    # vLLM only.
    tensor_parallel_size: PositiveInt = 1
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0)
    max_model_len: PositiveInt | None = None
    lora_path: str | None = None


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
