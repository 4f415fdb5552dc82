"""The dtype models compute in. ``auto``, the default everywhere, follows the hardware:

| hardware | auto | why |
|---|---|---|
| CUDA GPU with bfloat16 | bfloat16 | half the memory, full speed |
| CUDA GPU without it | float16 | |
| x86 CPU with AVX512-BF16 or AMX, kernels allowed to use them | bfloat16 | native bf16 dot products |
| Arm CPU with the BF16 extension | bfloat16 | |
| any other CPU | float32 | bf16 is emulated: an AVX2-only EPYC ran a bf16 matmul at 0.9 GFLOPS against 108 in fp32 |

PyTorch and oneDNN can be held below what the CPU offers (``ATEN_CPU_CAPABILITY``,
``ONEDNN_MAX_CPU_ISA``); a limit that excludes bf16 instructions counts as no native bf16.
An explicit dtype (``float32``, ``bfloat16``, ``float16``) is always used as given.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from fsku_kedro.names import DTYPES

logger = logging.getLogger(__name__)

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that leave out its bf16 instructions.
ONEDNN_CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI")


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str
    reason: str


def cpu_flags() -> set[str]:
    """The first CPU's feature flags from /proc/cpuinfo (``flags`` on x86, ``Features`` on Arm);
    empty where the file is missing."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bfloat16(machine: str | None = None) -> tuple[bool, str]:
    """Whether this CPU computes bfloat16 natively here, and why."""
    import torch

    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64"):
        capability = torch.backends.cpu.get_cpu_capability()
        units = [name for name, present in (("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
                                            ("AMX", torch.cpu._is_amx_tile_supported())) if present]
        if not units:
            return False, f"the CPU has neither AVX512-BF16 nor AMX (PyTorch kernels: {capability})"
        if capability in ("DEFAULT", "AVX2"):
            return False, f"the CPU has {' and '.join(units)}, but PyTorch is limited to {capability} kernels"
        cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
        if cap in ONEDNN_CAPS_WITHOUT_BF16:
            return False, f"the CPU has {' and '.join(units)}, but oneDNN is limited to {cap}"
        return True, f"the CPU has {' and '.join(units)}"
    if machine in ("aarch64", "arm64"):
        if "bf16" in cpu_flags():
            return True, "the CPU has the Arm BF16 extension"
        return False, "the CPU has no Arm BF16 extension"
    return False, f"no native bfloat16 is known for {machine} CPUs"


@functools.cache
def auto_dtype() -> DtypeChoice:
    """What ``auto`` means on this machine (decided once per process)."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        if torch.cuda.is_bf16_supported():
            return DtypeChoice("bfloat16", f"CUDA GPU {name} supports bfloat16")
        return DtypeChoice("float16", f"CUDA GPU {name} has no bfloat16")
    native, reason = cpu_bfloat16()
    return DtypeChoice("bfloat16" if native else "float32", reason)


def resolve_dtype(requested: str) -> str:
    """``requested`` itself, or for ``auto`` this machine's choice."""
    if requested == "auto":
        return auto_dtype().dtype
    if requested not in DTYPES:
        raise ValueError(f"unknown dtype {requested!r}; choose auto or one of {', '.join(DTYPES)}")
    return requested


def torch_dtype(requested: str):
    import torch

    return getattr(torch, resolve_dtype(requested))


def log_choice() -> None:
    choice = auto_dtype()
    logger.info("Compute dtype 'auto' is %s here: %s", choice.dtype, choice.reason)
