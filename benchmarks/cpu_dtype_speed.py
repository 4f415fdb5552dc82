"""The heavy nodes' kernels in float32 and bfloat16, on this CPU as it is and limited to AVX2, and
whether the compute dtype ``auto`` picks the faster one in both cases.

    python benchmarks/cpu_dtype_speed.py            # about 10 minutes on an AVX2-only CPU (bf16 is slow there)
    python benchmarks/cpu_dtype_speed.py --quick    # smaller shapes, a plumbing check of the script

Each ISA setting runs in a fresh process (PyTorch and oneDNN read their limits at start):
- native: no limit;
- avx2: ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``ATEN_CPU_CAPABILITY=avx2``, what an AVX2-only CPU sees.

Kernels, with Qwen2.5-1.5B-Instruct's real shapes (random weights: speed does not depend on them):
- matmul: 512x1536 by 1536x1536, as GFLOPS;
- linear: ``nn.Linear(1536, 8960)`` on 4 x 150 tokens (an MLP projection of a scoring batch);
- choice scoring: one batch of 4 multiple-choice prompts (150 tokens) through the project's
  ``score_choices`` on a one-decoder-layer model with the full vocabulary;
- gptq layer: GPTQModel quantizing that one-layer model on 8 calibration texts of 128 tokens;
- gptq forward: the quantized layer's model scoring the same batch (GPTQModel's CPU kernel).

Target: wherever the two dtypes differ by more than 10 %, ``auto`` picks the faster. The figures are
recorded in benchmarks/results/cpu_dtype_speed.<CPU kind>.json (native_bf16 or no_bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import ROOT, cpu_line, print_table, verdict, write_result

SETTINGS = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
DTYPES = ("float32", "bfloat16")
MARGIN = 0.10  # closer than this, either dtype is a fair pick


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call; a call slower than 2 s is timed once
    (its one-off costs are negligible then)."""
    start = time.perf_counter()
    fn()
    if time.perf_counter() - start > 2.0:
        return time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _one_layer_model(directory: Path, dtype: str, quick: bool):
    import torch

    from architectures import load_config, random_model, shrunken, stand_in_tokenizer

    config = load_config("qwen2.5-1.5b-instruct")
    if quick:
        config = shrunken(config, layers=1, hidden=256, intermediate=512, heads=4, kv_heads=2)
    else:
        config = shrunken(config, layers=1, hidden=config.hidden_size, intermediate=config.intermediate_size,
                          heads=config.num_attention_heads, kv_heads=config.num_key_value_heads)
    model = random_model(config, dtype)
    if not (directory / "config.json").exists():
        model.to(torch.float32).save_pretrained(directory, safe_serialization=True)
        stand_in_tokenizer().save_pretrained(directory)
    return model


def _prompts(tokens: int, count: int) -> list[list[dict[str, str]]]:
    from architectures import stand_in_word

    words = [" ".join(stand_in_word(1000 + 37 * i + j) for j in range(tokens - 30)) for i in range(count)]
    return [[{"role": "user", "content": f"{w}\n1 a b\n2 c d\n3 e f\n4 g h"}] for w in words]


def child(quick: bool) -> dict:
    """Every kernel in each dtype, in this process's ISA setting."""
    import torch

    from fsku_kedro.answering.choice_scoring import score_choices
    from fsku_kedro.compression.methods import quantize
    from fsku_kedro.models.bundle import ModelBundle
    from fsku_kedro.models.compute_dtype import auto_dtype
    from fsku_kedro.models.sources import load_tokenizer
    from fsku_kedro.parameters.compression import CompressionSettings

    torch.manual_seed(0)
    repeats = 2 if quick else 3
    hidden, inner, tokens = (256, 512, 40) if quick else (1536, 8960, 150)
    out = {"capability": torch.backends.cpu.get_cpu_capability(), "auto": auto_dtype().dtype,
           "reason": auto_dtype().reason, "seconds": {}}
    with tempfile.TemporaryDirectory() as work:
        base = Path(work) / "model"
        base.mkdir()
        _one_layer_model(base, "float32", quick)
        tokenizer = load_tokenizer(str(base))
        chats = _prompts(tokens, 4)
        texts = [" ".join(tokenizer.convert_ids_to_tokens(list(range(2000 + 131 * i, 2000 + 131 * i + 128))))
                 for i in range(8)]
        for dtype in DTYPES:
            kind = getattr(torch, dtype)
            a, b = torch.randn(512, hidden, dtype=kind), torch.randn(hidden, hidden, dtype=kind)
            linear = torch.nn.Linear(hidden, inner).to(kind)
            x = torch.randn(4, tokens, hidden, dtype=kind)
            model = _one_layer_model(base, dtype, quick)
            bundle = ModelBundle(model, tokenizer, "one-layer")
            seconds = {
                "matmul": _timed(lambda a=a, b=b: a @ b, repeats),
                "linear": _timed(lambda linear=linear, x=x: linear(x), repeats),
                "choice scoring": _timed(lambda m=bundle: score_choices(m, chats, [4] * 4, batch_size=4), repeats),
            }
            settings = CompressionSettings.model_validate(
                {"dtype": dtype, "gptq": {"group_size": 128 if not quick else 64, "backend": "torch"},
                 "calibration": {"max_tokens": 128, "batch_size": 4}})
            start = time.perf_counter()
            quantized = quantize("gptq", str(base), tokenizer, texts, settings, Path(work) / f"gptq_{dtype}")
            seconds["gptq layer"] = time.perf_counter() - start
            gptq = ModelBundle(quantized, tokenizer, "one-layer-gptq")
            seconds["gptq forward"] = _timed(lambda m=gptq: score_choices(m, chats, [4] * 4, batch_size=4), repeats)
            seconds["matmul GFLOPS"] = 2 * 512 * hidden * hidden / seconds["matmul"] / 1e9
            out["seconds"][dtype] = seconds
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small shapes: checks the script, not the CPU")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.quick)))
        return 0
    results = {}
    for name, env in SETTINGS.items():
        command = [sys.executable, __file__, "--child"] + (["--quick"] if args.quick else [])
        done = subprocess.run(command, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-3000:])
            return 2
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nCPU: {cpu_line()}" + ("  (--quick: small shapes, a plumbing check)" if args.quick else "") + "\n")
    rows, misses = [], []
    kernels = [k for k in results["native"]["seconds"]["float32"] if k != "matmul GFLOPS"]
    for name, result in results.items():
        for kernel in kernels:
            f32, b16 = (result["seconds"][d][kernel] for d in DTYPES)
            faster = "float32" if f32 <= b16 else "bfloat16"
            close = abs(f32 - b16) <= MARGIN * min(f32, b16)
            right = close or result["auto"] == faster
            if not right:
                misses.append(f"{name} {kernel}")
            rows.append([name, result["capability"], kernel, f"{f32:.3f}", f"{b16:.3f}", f"{b16 / f32:.1f}x",
                         result["auto"], "yes" if right else "NO"])
        rows.append([name, result["capability"], "matmul GFLOPS",
                     *(f"{result['seconds'][d]['matmul GFLOPS']:.1f}" for d in DTYPES), "", "", ""])
    print_table(["ISA", "PyTorch kernels", "kernel", "float32 s", "bfloat16 s", "bf16 / fp32", "auto", "auto faster"],
                rows)
    for name, result in results.items():
        print(f"auto ({name}): {result['auto']}, because {result['reason']}")
    if not args.quick:
        path = write_result("cpu_dtype_speed", results, by_cpu_kind=True, settings=list(SETTINGS), margin=MARGIN,
                            shapes="Qwen2.5-1.5B-Instruct, one decoder layer, random weights")
        print(f"recorded in {path.relative_to(ROOT)}")
    return verdict(not misses, "auto picks the faster dtype for every kernel and ISA setting"
                   + (f" (missed: {', '.join(misses)})" if misses else ""))


if __name__ == "__main__":
    sys.exit(main())
