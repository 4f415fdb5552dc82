"""Quantization methods and the checks that run before any of them starts.

- ``gptq``: 4-bit GPTQ through GPTQModel (calibrated on knowledge-base chunks and training
  prompts). It writes the GPTQ checkpoint format that transformers loads (CPU: GPTQModel's torch
  kernel, via optimum) and that vLLM serves natively on GPU.
- ``awq``: 4-bit AWQ through GPTQModel (activation-aware scales, then a zero point per group), in
  the GEMM layout transformers loads; on CPU its kernels compute in bfloat16 only.
- ``nf4`` / ``int8``: bitsandbytes 4-bit NormalFloat and LLM.int8() weights, applied at load time
  by transformers and saved with the model (bitsandbytes 0.50 runs both on CPU).
- ``int8_dynamic``: torchao int8 weights with dynamically quantized int8 activations.

Every method writes safetensors.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from fsku_kedro.errors import UserInputError
from fsku_kedro.log_setup import LOG_FILE, console_to_log
from fsku_kedro.models.compute_dtype import resolve_dtype, torch_dtype
from fsku_kedro.parameters.compression import CompressionSettings, NF4Settings

logger = logging.getLogger(__name__)

GPTQ_CPU_BACKENDS = ("auto", "torch")
# bitsandbytes 0.50: on a CPU with AVX512-BF16, Linear4bit.forward (eval mode, no gradient) repacks its
# weight with functional._convert_weight_packed_for_cpu, which groups output rows in blocks of 32
# (block_n) and reshapes the per-block scales to [out_features, in_features // blocksize]; 4-bit weights
# are quantized in blocks of 64 (Params4bit's default, which transformers keeps).
NF4_CPU_ROW_BLOCK = 32
# GPTQModel 7.6's AWQ clip search (awq_processor._compute_best_clip) walks output rows in blocks of
# 256, else 64, and asserts that one of them divides the layer's rows.
AWQ_ROW_BLOCK = 64
NF4_BLOCKSIZE = 64


class CompressionConfigError(UserInputError):
    """A quantization setting that cannot work; the message names the method and the fix."""


def _quantized_in_features(config: Any) -> dict[str, int]:
    sizes = {"hidden size": config.hidden_size}
    if getattr(config, "intermediate_size", None):
        sizes["intermediate size"] = config.intermediate_size
    return sizes


def quantized_linear_shapes(model_config: Any) -> list[tuple[str, int, int]]:
    """``(layer, in_features, out_features)`` of every linear layer a weight quantizer would convert,
    read from a weightless (meta) copy of the model, skipping those transformers keeps in full
    precision (LM head, tied weights)."""
    from transformers import AutoModelForCausalLM
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    kept = get_keys_to_not_convert(model)
    return [(name, module.in_features, module.out_features) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and should_convert_module(name, kept)]


def nf4_cpu_packing_misfits(model_config: Any) -> list[tuple[str, int, int]]:
    """The layers bitsandbytes would quantize to 4 bits whose shape its packed CPU format cannot hold:
    out_features not a multiple of ``NF4_CPU_ROW_BLOCK`` or in_features not a multiple of ``NF4_BLOCKSIZE``."""
    return [(name, rows_in, rows_out) for name, rows_in, rows_out in quantized_linear_shapes(model_config)
            if rows_out % NF4_CPU_ROW_BLOCK or rows_in % NF4_BLOCKSIZE]


def check_configuration(settings: CompressionSettings, model_config: Any, cuda: bool) -> None:
    """Raise ``CompressionConfigError`` for a setting that would fail on this model, before any work starts."""
    methods = settings.methods
    if "gptq" in methods:
        gptq = settings.gptq
        _check_group_size("gptq", gptq.group_size, model_config, per_column=True)
        from gptqmodel.models.auto import MODEL_MAP

        if model_config.model_type not in MODEL_MAP:
            raise CompressionConfigError(
                f"gptq: architecture {model_config.model_type!r} is not supported by GPTQModel; "
                "use nf4, int8 or int8_dynamic for this model"
            )
        if not cuda and gptq.backend.lower() not in GPTQ_CPU_BACKENDS:
            raise CompressionConfigError(
                f"gptq: kernel backend {gptq.backend!r} needs a CUDA GPU; set compression.gptq.backend: torch on CPU"
            )
    if "awq" in methods:
        _check_awq(settings, model_config, cuda)
    if not cuda and "nf4" in methods:
        if resolve_dtype(settings.dtype) == "float16":
            raise CompressionConfigError("nf4: compression.dtype float16 is GPU-only here; use auto, float32 or "
                                         "bfloat16 on CPU")
        # Refused on every CPU, not only where bitsandbytes takes its packed AVX512-BF16 path, so the
        # same model is accepted or refused whatever machine runs the pipeline.
        misfits = nf4_cpu_packing_misfits(model_config)
        if misfits:
            name, rows_in, rows_out = misfits[0]
            raise CompressionConfigError(
                f"nf4: layer {name} ({rows_in} inputs -> {rows_out} outputs) does not fit bitsandbytes' CPU 4-bit "
                f"format, which needs out_features a multiple of {NF4_CPU_ROW_BLOCK} and in_features a multiple of "
                f"the {NF4_BLOCKSIZE}-weight quantization block ({len(misfits)} layer(s) in all); "
                "drop nf4 from compression.methods for this model on CPU, or quantize it on a CUDA GPU"
            )


def _check_group_size(method: str, group: int, model_config: Any, per_column: bool) -> None:
    """A group size must divide the hidden and intermediate sizes (-1, one group per column, where allowed)."""
    for name, size in _quantized_in_features(model_config).items():
        if not (per_column and group == -1) and size % group:
            divisors = [g for g in (32, 64, 128, 256) if size % g == 0] + ([-1] if per_column else [])
            raise CompressionConfigError(f"{method}: group_size {group} does not divide the model's {name} {size}; "
                                         f"set compression.{method}.group_size to one of {divisors}")


def _check_awq(settings: CompressionSettings, model_config: Any, cuda: bool) -> None:
    _check_group_size("awq", settings.awq.group_size, model_config, per_column=False)
    misfits = [(name, rows) for name, _, rows in quantized_linear_shapes(model_config) if rows % AWQ_ROW_BLOCK]
    if misfits:
        name, rows = misfits[0]
        raise CompressionConfigError(
            f"awq: layer {name} has {rows} outputs; GPTQModel's AWQ clipping search works on blocks of "
            f"{AWQ_ROW_BLOCK} output rows ({len(misfits)} layer(s) do not fit); use gptq for this model")
    dtype = resolve_dtype(settings.dtype)
    if not cuda and dtype != "bfloat16":
        why = (" (auto: this CPU has no native bfloat16, and bf16 kernels run tens of times slower on it)"
               if settings.dtype == "auto" else "")
        raise CompressionConfigError(
            f"awq: GPTQModel's CPU AWQ kernels compute in bfloat16 only, and compression.dtype is {dtype} "
            f"here{why}; use gptq on this CPU, or set compression.dtype: bfloat16 to run AWQ anyway")


def _bnb_config(method: str, nf4: NF4Settings, dtype: str):
    from transformers import BitsAndBytesConfig

    if method == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=nf4.double_quant,
            bnb_4bit_compute_dtype=torch_dtype(dtype),
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def _gptq(source: str, tokenizer: Any, calibration: list[str], settings: CompressionSettings, work_dir: Path) -> Path:
    """GPTQModel's GPTQ, its calibration forward passes in ``settings.dtype`` (GPTQModel would pick bfloat16
    on every CPU, which one without native bf16 runs about a hundred times slower than float32)."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(os.cpu_count() or 1, 4))))
    from gptqmodel import QuantizeConfig

    gptq = settings.gptq
    config = QuantizeConfig(
        bits=gptq.bits,
        group_size=gptq.group_size,
        desc_act=gptq.desc_act,
        static_groups=gptq.static_groups,
        sym=gptq.sym,
        damp_percent=gptq.damp_percent,
        # GPTQModel 7.6's act-group-aware ordering (its default) gave layer outputs 0.54 off the
        # original on SmolLM2 instead of 0.17 without it; off unless asked for.
        act_group_aware=gptq.act_group_aware,
    )
    return _run_gptqmodel("gptq", config, source, tokenizer, calibration, settings, work_dir)


def _run_gptqmodel(method: str, config: Any, source: str, tokenizer: Any, calibration: list[str],
                   settings: CompressionSettings, work_dir: Path, **quantize_options: Any) -> Path:
    """Load ``source`` into GPTQModel with ``config``, quantize it on the calibration texts in
    ``settings.dtype`` and save it under ``work_dir / method``; GPTQModel's console output goes to the log."""
    samples = [tokenizer(text, truncation=True, max_length=settings.calibration.max_tokens)["input_ids"]
               for text in calibration]
    out = work_dir / method
    dtype = torch_dtype(settings.dtype)
    logger.info("%s: quantizing on %d calibration texts in %s; GPTQModel's progress goes to %s", method,
                len(samples), str(dtype).removeprefix("torch."), LOG_FILE)
    with console_to_log(logging.getLogger("fsku_kedro.console.gptqmodel")):
        from gptqmodel import GPTQModel

        model = GPTQModel.load(source, config, dtype=dtype, trust_remote_code=settings.trust_remote_code)
        model.quantize(samples, batch_size=settings.calibration.batch_size, **quantize_options)
        model.save(str(out))
    return out


def _awq(source: str, tokenizer: Any, calibration: list[str], settings: CompressionSettings, work_dir: Path) -> Path:
    """GPTQModel's AWQ, its calibration forward passes in ``settings.dtype``, saved in the GEMM layout."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(os.cpu_count() or 1, 4))))
    from gptqmodel import BACKEND, QuantizeConfig
    from gptqmodel.quantization import FORMAT, METHOD

    config = QuantizeConfig(method=METHOD.AWQ, format=FORMAT.GEMM, bits=settings.awq.bits,
                            group_size=settings.awq.group_size)
    # GPTQModel picks its CUDA GEMM kernel for AWQ; its portable torch kernel writes the same layout.
    backend = BACKEND.AUTO if torch.cuda.is_available() else BACKEND.AWQ_TORCH
    return _run_gptqmodel("awq", config, source, tokenizer, calibration, settings, work_dir, backend=backend)


def quantize(
    method: str,
    source: str,
    tokenizer: Any,
    calibration: list[str],
    settings: CompressionSettings,
    work_dir: Path,
) -> Any:
    """The model at ``source`` quantized with ``method``, loaded through transformers."""
    from transformers import AutoModelForCausalLM

    trust = settings.trust_remote_code
    device_map = "auto" if torch.cuda.is_available() else "cpu"
    dtype = torch_dtype(settings.dtype)
    if method in ("gptq", "awq"):
        directory = (_gptq if method == "gptq" else _awq)(source, tokenizer, calibration, settings, work_dir)
        return AutoModelForCausalLM.from_pretrained(directory, device_map=device_map, dtype=dtype,
                                                    trust_remote_code=trust)
    if method in ("nf4", "int8"):
        config = _bnb_config(method, settings.nf4, settings.dtype)
    elif method == "int8_dynamic":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig
        from transformers import TorchAoConfig

        config = TorchAoConfig(Int8DynamicActivationInt8WeightConfig())
    else:
        raise CompressionConfigError(f"unknown compression method {method!r}")
    return AutoModelForCausalLM.from_pretrained(
        source, quantization_config=config, device_map=device_map, dtype=dtype, trust_remote_code=trust
    )
