"""Multiple-choice throughput on CPU with the default student: choice scoring against generation
followed by answer extraction, on the same prompts and batches.

    python benchmarks/mc_throughput.py [--questions 200] [--batch-size 8]

Questions: a fixed seeded slice of the FSKU benchmark's multiple-choice set (../shared/fsku-benchmark,
as the catalog's fsku_benchmark_* entries locate it), or the sample set's multiple-choice questions
when the benchmark is absent. Prompts are the inference pipeline's own (retrieved context included),
and the model is the one `kedro run --pipelines inference` answers with; `--closed-book` drops the context.
Generation uses `inference.mc_generation.max_new_tokens`; an answer with no valid number is wrong.

Target: choice scoring at least 5x the questions/s of generate-then-extract, with equal or better accuracy.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from inference_runs import ROOT
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from report import print_table, verdict

from fsku_kedro.answering.choice_scoring import score_choices
from fsku_kedro.answering.extraction import extract_choice
from fsku_kedro.answering.prompts import PreparedQuestion, build_chat
from fsku_kedro.evaluation.fsku_benchmark import benchmark_set
from fsku_kedro.generation.backends import make_backend
from fsku_kedro.parameters.inference import BenchmarkSliceSettings
from fsku_kedro.pipelines.inference.nodes import load_inference_model, retrieve_passages
from fsku_kedro.prompt_templates import read_templates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--closed-book", action="store_true", help="prompts without retrieved context")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT) as session:
        catalog = session.load_context().catalog
        params = catalog.load("params:inference")
        mc = catalog.load("fsku_benchmark_mc")
        if len(mc):
            table, labels = benchmark_set(mc, catalog.load("fsku_benchmark_mc_answers"),
                                          catalog.load("fsku_benchmark_descriptive").iloc[0:0],
                                          BenchmarkSliceSettings(mc_limit=args.questions))
            source = f"FSKU benchmark MC, fixed slice of {len(table)}"
        else:
            table, labels = catalog.load("test_questions"), catalog.load("test_labels")
            source = "sample set (FSKU benchmark absent)"
        expected = {label.ID: label.answer.strip() for label in labels}
        questions = [q for q in table if q.question_type == "multiple_choice" and q.ID in expected]
        passages, _ = retrieve_passages(
            questions, catalog.load("chunks"), catalog.load("bm25_index"), catalog.load("faiss_index"),
            catalog.load("embedder"), catalog.load("reranker"), {}, catalog.load("params:retrieval"),
        )
        bundle = load_inference_model(catalog.load("compressed_student@path"), params)
        templates = read_templates(catalog.load("prompt_templates"))
    settings = params.model_copy(update={"use_context": not args.closed_book})
    chats = [build_chat(PreparedQuestion(q, passages[q.ID]), templates, settings) for q in questions]
    counts = [len(q.choices) for q in questions]
    tokens = [len(bundle.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True,
                                                       return_dict=False)) for c in chats]

    start = time.perf_counter()
    scored = score_choices(bundle, chats, counts, batch_size=args.batch_size, show_progress=True)
    scoring_s = time.perf_counter() - start
    backend = make_backend(bundle, params.generation.model_copy(update={"batch_size": args.batch_size}),
                           show_progress=True)
    start = time.perf_counter()
    completions = backend.generate(chats, params.mc_generation)
    generate_s = time.perf_counter() - start
    extracted = [extract_choice(c.text, n) for c, n in zip(completions, counts)]

    n = len(questions)
    scoring_acc = sum(str(c.number) == expected[q.ID] for c, q in zip(scored, questions)) / n
    generate_acc = sum(str(e) == expected[q.ID] for e, q in zip(extracted, questions)) / n
    speedup = generate_s / scoring_s
    print(f"\n{source}; {'closed book' if args.closed_book else 'with retrieved context'}; "
          f"model {bundle.name}; batch {args.batch_size}; "
          f"prompt tokens mean {sum(tokens) / n:.0f}; generation max_new_tokens {params.mc_generation.max_new_tokens}\n")
    print_table(["method", "seconds", "questions/s", "accuracy", "answers with a valid number"], [
        ("choice scoring", f"{scoring_s:.1f}", f"{n / scoring_s:.2f}", f"{scoring_acc:.3f}", f"{n}/{n}"),
        ("generate + extract", f"{generate_s:.1f}", f"{n / generate_s:.2f}", f"{generate_acc:.3f}",
         f"{sum(e is not None for e in extracted)}/{n}"),
    ])
    print(f"\nspeed-up: {speedup:.1f}x")
    return verdict(speedup >= 5.0 and scoring_acc >= generate_acc,
                   "choice scoring >= 5x the questions/s of generate-then-extract, accuracy equal or better")


if __name__ == "__main__":
    sys.exit(main())
