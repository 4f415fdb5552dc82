"""compression: quantization methods, calibration and the report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from fsku_kedro.names import DtypeName
from fsku_kedro.parameters.base import Settings
from fsku_kedro.parameters.generation import GenerationSettings

QuantizationMethod = Literal["gptq", "awq", "nf4", "int8", "int8_dynamic"]
# What inference serves: a quantized variant, or "none", the unquantized model in the compute dtype.
ServedMethod = Literal["none", QuantizationMethod]


class GPTQSettings(Settings):
    """GPTQModel's GPTQ."""

    bits: Literal[2, 3, 4, 8] = 4
    group_size: int = 64  # must divide the hidden and intermediate sizes (SmolLM2: 576, 1536); -1: per column
    desc_act: bool = False  # act-order: columns quantized by decreasing activation size
    static_groups: bool = False  # with desc_act: groups fixed before the reordering, so no regrouping at run time
    sym: bool = True
    damp_percent: float = Field(0.05, gt=0.0, lt=1.0)
    act_group_aware: bool = False  # GPTQModel's default (true) damaged SmolLM2's layers with desc_act false
    backend: str = "auto"  # CPU: auto or torch; marlin / exllama kernels need CUDA

    @field_validator("group_size")
    @classmethod
    def _group(cls, value: int) -> int:
        if value != -1 and value <= 0:
            raise ValueError("group_size must be positive, or -1 for one group per column")
        return value


class AWQSettings(Settings):
    """GPTQModel's AWQ: activation-aware per-channel scales searched on the calibration texts, then
    4-bit weights with a zero point per group (GEMM layout, which transformers loads)."""

    bits: Literal[4] = 4
    group_size: int = Field(64, gt=0)  # must divide the hidden and intermediate sizes


class NF4Settings(Settings):
    double_quant: bool = True


class CalibrationSettings(Settings):
    """What GPTQ calibrates on: knowledge-base chunks, the prompt set's training prompts and
    FSKU-style multiple-choice prompts made from the chunks (both prompt kinds in the model's chat
    template, as it reads them when answering); held-out chunks measure perplexity."""

    calibration_samples: PositiveInt = 64  # texts in all
    prompt_share: float = Field(0.25, ge=0.0, le=1.0)  # training prompts
    mc_prompt_share: float = Field(0.0, ge=0.0, le=1.0)  # multiple-choice prompts made from the knowledge base
    held_out_share: float = Field(0.15, ge=0.0, lt=1.0)  # chunks kept out of calibration, for perplexity
    held_out_chunks: NonNegativeInt = 32
    max_tokens: PositiveInt = 512  # per calibration text
    batch_size: PositiveInt = 4
    seed: int = 0

    @model_validator(mode="after")
    def _shares_fit(self) -> CalibrationSettings:
        if self.prompt_share + self.mc_prompt_share > 1.0:
            raise ValueError(f"prompt_share + mc_prompt_share is {self.prompt_share + self.mc_prompt_share}; "
                             "at most 1 (the rest are chunks)")
        return self


class CompressionReportSettings(Settings):
    # sizes: size on disk and held-out perplexity of every variant; full: also peak memory at load,
    # generation tokens/s and the FSKU validation score (minutes more on a CPU)
    level: Literal["sizes", "full"] = "sizes"
    max_tokens: PositiveInt = 256  # per held-out chunk, for perplexity
    speed_prompts: PositiveInt = 4
    # tokens/s only: the FSKU score answers as the inference settings serve (evaluation/closed_book.py)
    generation: GenerationSettings = GenerationSettings(batch_size=4, max_new_tokens=32)


class CompressionSettings(Settings):
    # The served variant only, by default; list more to compare them in the report (none with
    # serve_method "none").
    methods: list[QuantizationMethod] = Field(default_factory=lambda: ["gptq"])
    serve_method: ServedMethod = "gptq"  # the variant saved as compressed_student (the inference default)
    # Compute dtype of the calibration forward passes, the kernels and the unquantized baseline;
    # auto follows the hardware (models/compute_dtype.py).
    dtype: DtypeName = "auto"
    trust_remote_code: bool = False
    gptq: GPTQSettings = GPTQSettings()
    awq: AWQSettings = AWQSettings()
    nf4: NF4Settings = NF4Settings()
    calibration: CalibrationSettings = CalibrationSettings()
    report: CompressionReportSettings = CompressionReportSettings()

    @model_validator(mode="after")
    def _served_is_made(self) -> CompressionSettings:
        if self.serve_method != "none" and self.serve_method not in self.methods:
            raise ValueError(f"serve_method {self.serve_method!r} is not among methods {self.methods}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods lists a method twice: {self.methods}")
        return self
