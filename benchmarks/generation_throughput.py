"""transformers backend on CPU with the default student: tokens/s batched vs one prompt at a time,
and the cost of resuming a run stopped half way.

    python benchmarks/generation_throughput.py [--prompts 32] [--max-new-tokens 64]

Target: batched generation (batch >= 8) at least 3x the tokens/s of one prompt at a time.
The resume figure compares (first half + restart) with one uninterrupted run over the same
prompts; the restart reads the progress file and generates only the missing half.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from string import Template

import pandas as pd
from report import catalog_with_chunks, print_table, verdict

from fsku_kedro.generation.backends import TransformersBackend
from fsku_kedro.generation.responses import generate_responses
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.parameters.generation import RoleGenerationSettings, SamplingSettings
from fsku_kedro.pipelines.response_generation.nodes import derive_student, prompt_id

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    catalog = catalog_with_chunks(None)
    student = derive_student(catalog.load("student_source"), catalog.load("chunks"), catalog.load("params:student_shape"))
    questions = catalog.load("sample_questions")
    templates = {name: load() for name, load in catalog.load("prompt_templates").items()}
    template = Template(templates["answer_multiple_choice"])
    prompts = [template.substitute(question=q.Question) for q in questions[: args.prompts]]
    chats = [[{"role": "user", "content": p}] for p in prompts]
    params = SamplingSettings(max_new_tokens=args.max_new_tokens)  # tokens/s counts tokens actually produced

    rows = []
    for batch_size in [1, *args.batch_sizes]:
        backend = TransformersBackend(student, batch_size=batch_size, cache_implementation="static",
                                      show_progress=False)
        start = time.perf_counter()
        completions = backend.generate(chats, params)  # the same prompts for every batch size
        elapsed = time.perf_counter() - start
        tokens = sum(c.completion_tokens for c in completions)
        rows.append({"batch": batch_size, "prompts": len(chats), "tokens": tokens, "seconds": elapsed,
                     "tokens/s": tokens / elapsed})
    table = pd.DataFrame(rows)
    base = table.loc[table.batch == 1, "tokens/s"].item()
    table["speed-up"] = table["tokens/s"] / base

    prompt_set = pd.DataFrame({"prompt_id": [prompt_id(p) for p in prompts], "prompt": prompts})
    settings = RoleGenerationSettings(batch_size=8, max_new_tokens=args.max_new_tokens, do_sample=False)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        generate_responses(prompt_set, student, ResponseStore(Path(scratch) / "full.jsonl"), settings)
        full = time.perf_counter() - start
        store = ResponseStore(Path(scratch) / "resumed.jsonl")
        start = time.perf_counter()
        generate_responses(prompt_set.iloc[: len(prompt_set) // 2], student, store, settings)  # stopped at 50 %
        first_half = time.perf_counter() - start
        start = time.perf_counter()
        generate_responses(prompt_set, student, store, settings)  # the restart
        restart = time.perf_counter() - start

    print(f"default student: {student.name}, {student.num_parameters / 1e6:.1f}M parameters, greedy, "
          f"max_new_tokens={args.max_new_tokens}")
    print_table(
        ["batch", "prompts", "tokens", "seconds", "tokens/s", "speed-up vs 1"],
        [[r["batch"], r["prompts"], r["tokens"], f"{r['seconds']:.1f}", f"{r['tokens/s']:.1f}", f"{r['speed-up']:.2f}x"]
         for r in table.to_dict("records")],
    )
    overhead = (first_half + restart) / full - 1
    print()
    print_table(
        ["resume at 50 %", "seconds"],
        [["uninterrupted run", f"{full:.1f}"], ["first half, then stopped", f"{first_half:.1f}"],
         ["restart (reads progress, generates the rest)", f"{restart:.1f}"],
         ["overhead of stopping and resuming", f"{overhead * 100:+.1f} %"]],
    )
    best = table.loc[table.batch >= 8, "speed-up"].max()
    return verdict(best >= 3.0, f"best batched (batch >= 8) speed-up {best:.2f}x, target >= 3x")


if __name__ == "__main__":
    sys.exit(main())
