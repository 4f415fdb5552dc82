"""compression: quantization methods, calibration and the report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from fsku_kedro.parameters.base import Settings
from fsku_kedro.parameters.generation import GenerationSettings

QUANTIZATION_METHODS = ("gptq", "nf4", "int8", "int8_dynamic")
QuantizationMethod = Literal["gptq", "nf4", "int8", "int8_dynamic"]


class GPTQSettings(Settings):
    """GPTQModel settings."""

    bits: Literal[2, 3, 4, 8] = 4
    group_size: int = 64  # must divide the hidden and intermediate sizes (SmolLM2: 576, 1536); -1: per column
    desc_act: bool = False
    sym: bool = True
    damp_percent: float = Field(0.05, gt=0.0, lt=1.0)
    act_group_aware: bool = False  # GPTQModel's default (true) damaged SmolLM2's layers with desc_act false
    backend: str = "auto"  # CPU: auto or torch; marlin / exllama kernels need CUDA
    batch_size: PositiveInt = 4
    max_calibration_tokens: PositiveInt = 512

    @field_validator("group_size")
    @classmethod
    def _group(cls, value: int) -> int:
        if value != -1 and value <= 0:
            raise ValueError("group_size must be positive, or -1 for one group per column")
        return value


class NF4Settings(Settings):
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # bfloat16 on GPU
    double_quant: bool = True


class CalibrationSettings(Settings):
    calibration_samples: PositiveInt = 64  # texts: knowledge-base chunks plus training prompts
    prompt_share: float = Field(0.25, ge=0.0, le=1.0)
    held_out_share: float = Field(0.15, ge=0.0, lt=1.0)  # chunks kept out of calibration, for perplexity
    held_out_chunks: NonNegativeInt = 32
    seed: int = 0


class CompressionReportSettings(Settings):
    # sizes: size on disk and held-out perplexity of every variant; full: also peak memory at load,
    # generation tokens/s and the FSKU validation score (minutes more on a CPU)
    level: Literal["sizes", "full"] = "sizes"
    max_tokens: PositiveInt = 256  # per held-out chunk, for perplexity
    speed_prompts: PositiveInt = 4
    batch_size: PositiveInt = 8  # choice scoring
    generation: GenerationSettings = GenerationSettings(batch_size=4, max_new_tokens=32)  # tokens/s, descriptive answers


class CompressionSettings(Settings):
    # The served variant only, by default; list more to compare them in the report.
    methods: list[QuantizationMethod] = Field(default_factory=lambda: ["gptq"], min_length=1)
    serve_method: QuantizationMethod = "gptq"  # the variant saved as compressed_student (the inference default)
    trust_remote_code: bool = False
    gptq: GPTQSettings = GPTQSettings()
    nf4: NF4Settings = NF4Settings()
    calibration: CalibrationSettings = CalibrationSettings()
    report: CompressionReportSettings = CompressionReportSettings()

    @model_validator(mode="after")
    def _served_is_made(self) -> CompressionSettings:
        if self.serve_method not in self.methods:
            raise ValueError(f"serve_method {self.serve_method!r} is not among methods {self.methods}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods lists a method twice: {self.methods}")
        return self
