"""How to serve a trained model, chosen on the FSKU benchmark's dev split: one pass against cyclic
averaging, closed book against retrieval, bfloat16 against a 4-bit copy, each at its measured cost.

    python benchmarks/serving_choices.py --model bf16=DIR [--model 4bit=DIR ...]
                                         [--settings "one pass, closed book" ...] [--questions N]

Every ``--model`` (a label and a model directory: a version of ``distilled_student``, a quantized copy)
answers the dev split of ``qwen_coder_cpu`` (400 multiple-choice questions with options shuffled by seed
0, and 40 descriptive; evaluation/fsku_benchmark.py) under each setting, through the served answering
path with the environment's inference settings. Descriptive questions are answered once per context
choice (debiasing touches only multiple choice). Answers resume from
data/qwen_coder_cpu/08_reporting/serving_choices.progress.jsonl, so a killed run redoes only unfinished
batches; each answer keeps the seconds it took when it was made.

Per model and setting: MC accuracy, descriptive score, the FSKU score (0.5 MC + 0.5 descriptive),
seconds per question of each kind, fallbacks, and the minutes projected for the competition's 515
questions (500 multiple choice, 15 descriptive). The choice: the best dev FSKU score whose projection
fits ``--budget-minutes`` (30; ties go to the faster), which the environment and its package then serve.
Exits 1 when no setting fits the budget, 2 when the benchmark files are absent. ``--questions N`` is a
plumbing check on the first N multiple-choice and N // 10 descriptive questions: printed, not recorded.

Record: benchmarks/results/serving_choices.<cpu kind>.json, one entry per model and setting (kept across
runs, each with its command, commit and date) and the choice among them all, with every answer (ID,
options as shown, expected, answer, option probabilities), so that any subset can be scored again.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import (
    ROOT,
    answer_record,
    catalog_with_chunks,
    cpu_line,
    labelled_directory,
    print_table,
    result_path,
    run_stamp,
    typed,
    verdict,
    write_result,
)

ENV = "qwen_coder_cpu"
PROGRESS = ROOT / "data" / ENV / "08_reporting" / "serving_choices.progress.jsonl"
SEED = 0
# Each setting: (retrieved passages in the prompt, averaged over the options' cyclic rotations).
SETTINGS = {"one pass, closed book": (False, False), "cyclic, closed book": (False, True),
            "one pass, retrieval": (True, False), "cyclic, retrieval": (True, True)}
# The competition's test set.
COMPETITION = {"multiple_choice": 500, "descriptive": 15}


def dev_set(catalog, limit: int | None):
    """The dev split's multiple-choice questions with options shuffled by ``SEED`` and its descriptive
    questions (``limit``: the first that many MC and a tenth as many descriptive), their labels, and
    each question as published; None without the benchmark."""
    from fsku_kedro.evaluation.fsku_benchmark import benchmark_split_sets

    tables = [catalog.load(f"fsku_benchmark_{part}") for part in ("mc", "mc_answers", "descriptive")]
    if tables[0].empty:
        return None
    sets = benchmark_split_sets(*tables, "dev", ["own", "shuffled"], seed=SEED)
    published, own_labels = sets["own"]
    mc, mc_labels = sets["shuffled"]
    descriptive = [q for q in published if q.question_type == "descriptive"]
    if limit is not None:
        mc, descriptive = mc[:limit], descriptive[:max(1, limit // 10)]
    questions = mc + descriptive
    ids = {q.ID for q in questions}
    labels = [label for label in mc_labels if label.ID in ids] + [
        label for label in own_labels if label.ID in ids and label.question_type == "descriptive"]
    return questions, labels, {q.ID: q for q in published}


def passages_for(catalog, questions) -> dict:
    """Retrieved passages per question ID, through the environment's retriever and its cache."""
    from fsku_kedro.knowledge.passages import retrieve_passages

    cache = "fsku_benchmark.retrieval_cache"
    found, updated = retrieve_passages(questions, *(catalog.load(name) for name in (
        "chunks", "bm25_index", "faiss_index", "embedder", "reranker", cache)), typed(catalog, "retrieval"))
    catalog.save(f"{cache}_updated", updated)
    return found


def projected_minutes(seconds: dict[str, float]) -> float:
    """Minutes for the competition's test set at the measured seconds per question of each kind."""
    return sum(COMPETITION[kind] * seconds[kind] for kind in COMPETITION) / 60


def chosen(figures: dict, budget: float) -> str | None:
    """The entry with the best FSKU score among those projected within ``budget`` minutes; ties go to
    the faster."""
    fitting = [name for name, f in figures.items() if f["projected_minutes"] <= budget]
    return max(fitting, key=lambda n: (figures[n]["fsku_score"], -figures[n]["projected_minutes"]), default=None)


def measure(bundle, questions, labels, passages, use_context: bool, cyclic: bool, context: dict) -> tuple[dict, list]:
    """One model under one setting: its scores, seconds per question of each kind, and its answer rows.
    Descriptive answers never depend on ``cyclic``, so they are asked for without it (and reused)."""
    from fsku_kedro.answering.batch_runner import answer_questions
    from fsku_kedro.answering.prompts import PreparedQuestion
    from fsku_kedro.evaluation.answer_report import answer_report, score_items
    from fsku_kedro.evaluation.benchmark_scores import served_settings
    from fsku_kedro.models.bundle import weights_key

    identity = f"{bundle.name}#{weights_key(bundle.name, bundle.model)}"
    rows = []
    for kind in COMPETITION:
        asked = [PreparedQuestion(q, tuple(passages.get(q.ID, ())) if use_context else ())
                 for q in questions if q.question_type == kind]
        settings = served_settings(context["inference"], cyclic and kind == "multiple_choice", use_context)
        rows += answer_questions(asked, bundle, context["templates"], settings, context["store"], identity=identity)
    items = score_items(rows, questions, labels, context["score_embedder"])
    overall = answer_report(items).iloc[0]
    seconds = {kind: sum(r.inference_time for r in rows if r.question_type == kind)
               / max(1, sum(r.question_type == kind for r in rows)) for kind in COMPETITION}
    return {"mc_accuracy": float(overall["mc_accuracy"]), "descriptive_score": float(overall["descriptive_score"]),
            "fsku_score": float(overall["fsku_score"]), "fallbacks": int(overall["fallbacks"]),
            "mc_seconds_per_question": seconds["multiple_choice"],
            "descriptive_seconds_per_question": seconds["descriptive"],
            "projected_minutes": projected_minutes(seconds)}, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=labelled_directory, action="append", required=True,
                        help="LABEL=DIR, repeatable")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="for the competition's 515 questions")
    parser.add_argument("--questions", type=int, default=None, help="only this many (a plumbing check)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.models.compute_dtype import resolve_dtype
    from fsku_kedro.models.loading import load_any_model
    from fsku_kedro.prompt_templates import read_templates

    catalog = catalog_with_chunks(ENV)
    dev = dev_set(catalog, args.questions)
    if dev is None:
        print("FSKU benchmark files not found; nothing to measure")
        return 2
    questions, labels, published = dev
    inference = typed(catalog, "inference")
    context = {"inference": inference, "templates": read_templates(catalog.load("prompt_templates")),
               "score_embedder": catalog.load("score_embedder"), "store": ResponseStore(PROGRESS)}
    passages = passages_for(catalog, questions) if any(SETTINGS[s][0] for s in args.settings) else {}
    stamp = run_stamp()
    figures: dict = {}
    for label, directory in args.model:
        bundle = load_any_model(directory.resolve(), dtype=inference.dtype)
        for setting in args.settings:
            start = time.perf_counter()
            scores, rows = measure(bundle, questions, labels, passages, *SETTINGS[setting], context)
            logging.getLogger(__name__).warning("%s, %s: %s (%.0f s)", label, setting, scores,
                                                time.perf_counter() - start)
            where = directory.resolve()
            figures[f"{label}: {setting}"] = {
                "model": bundle.name, "directory": where.relative_to(ROOT).as_posix() if where.is_relative_to(ROOT)
                else str(where), "setting": setting, "run": stamp, **scores,
                "answers": answer_record([row.model_dump() for row in rows],
                                         {label.ID: label.answer for label in labels}, published,
                                         f"shuffled_{SEED}")}
        del bundle
    kinds = {kind: sum(q.question_type == kind for q in questions) for kind in COMPETITION}
    path = None
    recording = args.questions is None  # a plumbing check must not replace the record
    if recording:
        previous = result_path("serving_choices", by_cpu_kind=True)
        kept = json.loads(previous.read_text(encoding="utf-8"))["figures"] if previous.is_file() else {}
        figures = {**kept, **figures}
    best = chosen(figures, args.budget_minutes)
    if recording:
        path = write_result("serving_choices", figures, by_cpu_kind=True, label="real models",
                            questions=kinds, dtype=resolve_dtype(inference.dtype),
                            evaluation=f"the FSKU benchmark's dev split, options shuffled by seed {SEED}, the served "
                            "answering path of qwen_coder_cpu; seconds per question as each answer was made",
                            projection=f"minutes for {COMPETITION} questions", budget_minutes=args.budget_minutes,
                            chosen=best)
    print(f"\nFSKU dev split ({cpu_line()}), real models, {kinds['multiple_choice']} MC shuffled, "
          f"{kinds['descriptive']} descriptive\n")
    print_table(["model: setting", "MC accuracy", "descriptive", "FSKU score", "s/q MC", "s/q descriptive",
                 "fallbacks", "minutes for 515"], [
        [name, f"{f['mc_accuracy']:.3f}", f"{f['descriptive_score']:.3f}", f"{f['fsku_score']:.3f}",
         f"{f['mc_seconds_per_question']:.2f}", f"{f['descriptive_seconds_per_question']:.2f}", f["fallbacks"],
         f"{f['projected_minutes']:.1f}"] for name, f in figures.items()])
    print(f"\n{'recorded in ' + str(path.relative_to(ROOT)) if path else 'a plumbing check, not recorded'}")
    return verdict(best is not None, f"a setting within {args.budget_minutes:.0f} minutes for 515 questions"
                   + (f": serve {best!r}" if best else ""))


if __name__ == "__main__":
    sys.exit(main())
