"""The competition's limits, checked for a package: GPU memory for the model and its KV cache, and
the projected time for the whole question set at the measured speed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BYTES_PER_VALUE = {"float32": 4, "bfloat16": 2, "float16": 2}
# The competition's GPU (an RTX 4090) supports bfloat16, so ``auto`` computes in it there.
TARGET_AUTO_DTYPE = "bfloat16"


@dataclass(frozen=True)
class LimitCheck:
    name: str
    measured: float
    limit: float
    unit: str
    detail: str

    @property
    def met(self) -> bool:
        return self.measured <= self.limit

    def describe(self) -> str:
        verdict = "within" if self.met else "OVER"
        return f"{self.name}: {self.measured:.2f} {self.unit} {verdict} the limit of {self.limit:g} {self.unit} ({self.detail})"


def weight_bytes(model_dir: Path, dtype: str) -> float:
    """Bytes of the weights once loaded: a quantized checkpoint as stored, a full-precision one with
    every parameter in ``dtype``."""
    from safetensors import safe_open

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    files = sorted(model_dir.glob("*.safetensors"))
    if "quantization_config" in config:
        return float(sum(path.stat().st_size for path in files))
    count = 0
    for path in files:
        with safe_open(str(path), "pt") as handle:
            for name in handle.keys():
                shape = handle.get_slice(name).get_shape()
                size = 1
                for dim in shape:
                    size *= dim
                count += size
    return float(count * BYTES_PER_VALUE[dtype])


def kv_cache_bytes(model_dir: Path, dtype: str, batch_size: int, tokens: int) -> float:
    """Keys and values of every layer for ``batch_size`` sequences of ``tokens`` tokens."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads") or heads
    return float(2 * config["num_hidden_layers"] * kv_heads * head_dim * tokens * batch_size * BYTES_PER_VALUE[dtype])


def check_limits(model_dir: Path, dtype: str, batch_size: int, tokens: int, gpu_memory_gb: float,
                 seconds_per_question: float, questions: int, budget_minutes: float) -> list[LimitCheck]:
    dtype = TARGET_AUTO_DTYPE if dtype == "auto" else dtype
    weights, cache = weight_bytes(model_dir, dtype), kv_cache_bytes(model_dir, dtype, batch_size, tokens)
    minutes = seconds_per_question * questions / 60
    return [
        LimitCheck("GPU memory", (weights + cache) / 2**30, gpu_memory_gb, "GiB",
                   f"weights {weights / 2**30:.2f} GiB + KV cache {cache / 2**30:.2f} GiB for {batch_size} "
                   f"sequences of {tokens} tokens in {dtype}"),
        LimitCheck("time", minutes, budget_minutes, "minutes",
                   f"{questions} questions at {seconds_per_question:.2f} s each, as measured by this run"),
    ]
