"""How much of the teacher a width-pruned student keeps before any training, with and without the
least-squares refit of its MLPs: the real teacher (Qwen2.5-Coder-1.5B-Instruct, ``qwen_coder_cpu``)
with every MLP cut to its N most active channels, the kept ``down_proj`` columns either as they were or
refitted by ridge least squares on the calibration activations (``student_shape.mlp_compensation_damping``).

    python benchmarks/width_compensation.py [--channels 6400] [--damping 0.01 0.1] [--passages 16 64]

Per candidate: perplexity on the held-out corpus chunks of the compression benchmark (256 tokens each),
less any chunk a candidate's derivation reads, and the seconds the derivation took. The calibration
passages are the node derive_student's (evenly spaced chunks). No FSKU question is read, so the table
can choose the damping without touching the dev or test split. Real models; no target: the table is
read to choose. Each candidate is written to the record as it finishes, and a rerun
measures only what the record lacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_teacher_quality import ROOT, _plain, _teacher_source, context, held_out_chunks
from report import RESULTS, cpu_line, print_table, write_result

RECORD = RESULTS / "width_compensation.json"
SET_ASIDE = (16, 64)  # the held-out chunks leave out these passage counts' too, so they stay one set
logger = logging.getLogger("benchmark.width_compensation")


def candidates(channels: int, dampings: list[float], passages: list[int]) -> list[tuple[str, dict]]:
    """(label, derivation settings) for the teacher, then per passage count the plain cut and each damping."""
    rows = [("teacher", {})]
    for count in passages:
        rows.append((f"mlp{channels} p={count}", {"mlp_channels": channels, "calibration_passages": count}))
        for damping in dampings:
            rows.append((f"mlp{channels}c d={damping:g} p={count}",
                         {"mlp_channels": channels, "mlp_compensation_damping": damping,
                          "calibration_passages": count}))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=6400)
    parser.add_argument("--damping", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--passages", type=int, nargs="+", default=[16])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    from fsku_kedro.models.compute_dtype import resolve_dtype
    from fsku_kedro.models.derivation import derive
    from fsku_kedro.models.loading import load_bundle
    from fsku_kedro.parameters.student_shape import StudentShapeSettings
    from fsku_kedro.pipelines.compression.nodes import perplexity
    from fsku_kedro.pipelines.response_generation.nodes import calibration_passages

    found = context()
    if found is None:
        print("the qwen_coder_cpu environment's data was not found; nothing to measure")
        return 2
    catalog = found[0]
    chunks = catalog.load("chunks")
    table = candidates(args.channels, args.damping, args.passages)
    counts = {*SET_ASIDE, *(StudentShapeSettings(**values).calibration_passages for _, values in table)}
    read = {text for count in counts for text in calibration_passages(chunks, count)}
    # The compression benchmark's held-out chunks, less any a derivation reads.
    held_out = [text for text in held_out_chunks(catalog) if text not in read]
    dtype = resolve_dtype(_plain(catalog).dtype)
    teacher_dir, _ = _teacher_source(catalog)
    source = load_bundle(teacher_dir, dtype, False, "Qwen2.5-Coder-1.5B-Instruct")
    previous = json.loads(RECORD.read_text(encoding="utf-8")) if RECORD.is_file() else {}
    here = {"cpu": cpu_line(), "dtype": str(dtype)}
    figures = dict(previous.get("figures", {})) if {k: previous.get(k) for k in here} == here else {}

    for label, shape_values in table:
        if figures.get(label, {}).get("held_out_chunks") == len(held_out):
            continue
        shape = StudentShapeSettings(**shape_values)
        passages = calibration_passages(chunks, shape.calibration_passages)
        began = time.perf_counter()
        model = derive(source, passages, shape.layers, shape.layer_selection, shape.mlp_channels,
                       shape.mlp_compensation_damping)
        seconds = time.perf_counter() - began
        figures[label] = {"settings": shape_values, "passages": len(passages),
                          "derive_seconds": round(seconds, 1),
                          "held_out_chunks": len(held_out), "perplexity": perplexity(model, held_out, 256)}
        del model
        write_result("width_compensation", figures, dtype=str(dtype),
                     models={"teacher": "Qwen2.5-Coder-1.5B-Instruct"},
                     evaluation=f"perplexity on {len(held_out)} held-out corpus chunks (256 tokens) of the "
                     "compression benchmark that no derivation reads; no FSKU question read",
                     settings={"channels": args.channels, "damping": args.damping, "passages": args.passages})
    rows = [[label, r["passages"] if r["settings"] else "–", f"{r['perplexity']:.2f}",
             f"{r['derive_seconds']:.0f}" if r["settings"] else "–"] for label, r in figures.items()]
    print(f"\nReal models ({here['cpu']}, {here['dtype']}); perplexity on {len(held_out)} held-out corpus chunks\n")
    print_table(["candidate", "calibration passages", "perplexity", "derive s"], rows)
    print(f"\nrecorded in {RECORD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
