"""The compression report on the default student, on CPU: size, load memory, speed, perplexity, FSKU.

    python benchmarks/compression_report.py [--skip-run]

Runs the compression pipeline in a Kedro session (as `kedro run --pipelines compression` does;
it needs a distilled student from an earlier run), then prints the versioned report and the
size of the GPTQ-quantized linear weights against the same weights in fp16.
``--skip-run`` reads the newest report and variants without running the pipeline;
``--source-dir`` quantizes another model directory (for example the cached teacher).

Targets: 4-bit linear weights at most 0.35x their fp16 size; int8 perplexity increase at most 5 %.
The 4-bit perplexity change is reported as measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from report import print_table, verdict
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
QUANTIZED_PARTS = ("qweight", "qzeros", "scales", "g_idx")


def gptq_linear_ratio(directory: Path) -> tuple[float, float, int]:
    """(bytes of the quantized linear tensors, bytes of the same weights in fp16, layers)."""
    bits = json.loads((directory / "config.json").read_text())["quantization_config"]["bits"]
    quantized = fp16 = 0
    layers = 0
    for file in directory.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as tensors:
            for name in tensors.keys():
                if name.rsplit(".", 1)[-1] not in QUANTIZED_PARTS:
                    continue
                tensor = tensors.get_tensor(name)
                quantized += tensor.numel() * tensor.element_size()
                if name.endswith("qweight"):
                    rows, cols = tensor.shape  # int32 words packing 32 / bits input rows each
                    fp16 += rows * (32 // bits) * cols * 2
                    layers += 1
    return quantized, fp16, layers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-run", action="store_true")
    parser.add_argument("--source-dir", help="quantize this model directory instead of the distilled student")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    bootstrap_project(ROOT)
    if not args.skip_run:
        runtime = {"model_dirs": {"compression": args.source_dir}} if args.source_dir else None
        with KedroSession.create(project_path=ROOT, runtime_params=runtime) as session:
            session.run(pipeline_name="compression")
    with KedroSession.create(project_path=ROOT) as session:
        catalog = session.load_context().catalog
        report = catalog.load("compression_report")
    variants = sorted((ROOT / "data/06_models/quantized_students").glob("*/quantized_students"))[-1]

    columns = ["method", "size_mb", "size_ratio", "peak_load_mib", "tokens_per_s", "perplexity",
               "perplexity_change", "fsku_score"]
    print(f"default student, CPU; variants in {variants.relative_to(ROOT)}\n")
    print_table(columns, [[f"{v:.3f}" if isinstance(v, float) else v for v in row]
                          for row in report[columns].itertuples(index=False)])
    by_method = report.set_index("method")
    checks, met = [], True
    if (variants / "gptq").is_dir():
        quantized, fp16, layers = gptq_linear_ratio(variants / "gptq")
        ratio = quantized / fp16
        checks.append(["gptq linear weights / fp16", f"{ratio:.3f} ({layers} layers, {quantized / 1e6:.1f} MB "
                       f"vs {fp16 / 1e6:.1f} MB)"])
        checks.append(["gptq perplexity change", f"{by_method.loc['gptq', 'perplexity_change']:+.2%}"])
        met &= ratio <= 0.35
    if "int8" in by_method.index:
        change = by_method.loc["int8", "perplexity_change"]
        checks.append(["int8 perplexity change", f"{change:+.2%}"])
        met &= change <= 0.05
    print()
    print_table(["check", "value"], checks)
    return verdict(met and bool(checks), "4-bit linear weights <= 0.35x fp16; int8 perplexity increase <= 5 %")


if __name__ == "__main__":
    sys.exit(main())
