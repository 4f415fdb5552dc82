"""The compute dtype ``auto``: bfloat16 only where the hardware computes it natively, explicit dtypes as given."""

import pytest
import torch

from fsku_kedro.distillation.training import trainer_bf16
from fsku_kedro.models import compute_dtype
from fsku_kedro.models.compute_dtype import auto_dtype, cpu_bfloat16, cpu_flags, resolve_dtype
from fsku_kedro.models.loading import load_any_model
from fsku_kedro.parameters.compression import CompressionSettings
from fsku_kedro.parameters.distillation import TrainingSettings
from fsku_kedro.parameters.inference import InferenceSettings


@pytest.fixture
def x86_cpu(monkeypatch):
    """Pretends to be an x86 CPU with the given bf16 units and PyTorch kernel level."""
    def make(avx512_bf16: bool, amx: bool, capability: str = "AVX512"):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    return make


def test_explicit_dtypes_win_and_unknown_ones_are_refused():
    for name in ("float32", "bfloat16", "float16"):
        assert resolve_dtype(name) == name
    with pytest.raises(ValueError, match="unknown dtype 'fp8'; choose auto or one of float32, bfloat16, float16"):
        resolve_dtype("fp8")
    assert trainer_bf16(True) is True and trainer_bf16(False) is False


def test_native_bf16_units_choose_bfloat16_unless_the_kernels_are_held_below_them(x86_cpu, monkeypatch):
    x86_cpu(avx512_bf16=True, amx=False)
    assert cpu_bfloat16("x86_64") == (True, "the CPU has AVX512-BF16")
    x86_cpu(avx512_bf16=False, amx=True)
    assert cpu_bfloat16("x86_64") == (True, "the CPU has AMX")
    x86_cpu(avx512_bf16=True, amx=True, capability="AVX2")
    native, reason = cpu_bfloat16("x86_64")
    assert not native and "PyTorch is limited to AVX2 kernels" in reason
    x86_cpu(avx512_bf16=True, amx=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    native, reason = cpu_bfloat16("x86_64")
    assert not native and "oneDNN is limited to AVX2" in reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert cpu_bfloat16("x86_64")[0]


def test_without_native_bf16_the_cpu_computes_in_float32(x86_cpu, monkeypatch):
    x86_cpu(avx512_bf16=False, amx=False, capability="AVX2")
    assert cpu_bfloat16("x86_64") == (False, "the CPU has neither AVX512-BF16 nor AMX (PyTorch kernels: AVX2)")
    monkeypatch.setattr(compute_dtype, "cpu_flags", lambda: {"fp", "asimd", "bf16"})
    assert cpu_bfloat16("aarch64") == (True, "the CPU has the Arm BF16 extension")
    monkeypatch.setattr(compute_dtype, "cpu_flags", lambda: {"fp", "asimd"})
    assert not cpu_bfloat16("aarch64")[0]
    assert not cpu_bfloat16("riscv64")[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU rule")
def test_auto_on_this_machine_follows_its_cpu_flags():
    native = bool({"avx512_bf16", "amx_bf16"} & cpu_flags()) and torch.backends.cpu.get_cpu_capability() == "AVX512"
    assert auto_dtype().dtype == ("bfloat16" if native else "float32")
    assert resolve_dtype("auto") == auto_dtype().dtype
    assert trainer_bf16("auto") is native
    assert auto_dtype().reason


def test_auto_is_the_default_wherever_a_model_computes(tiny_llama_dir):
    assert InferenceSettings().dtype == "auto" and CompressionSettings().dtype == "auto"
    assert TrainingSettings().bf16 == "auto"
    bundle = load_any_model(tiny_llama_dir)
    assert next(bundle.model.parameters()).dtype == getattr(torch, resolve_dtype("auto"))
    explicit = load_any_model(tiny_llama_dir, "bfloat16")
    assert next(explicit.model.parameters()).dtype == torch.bfloat16
