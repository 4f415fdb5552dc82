"""vLLM's CPU engine against transformers on the real teacher (Qwen2.5-Coder-1.5B-Instruct, ``--env
qwen_coder_cpu``), in one run on one CPU: the same answers, and the time of each kind of work the
environment's nodes do. Real models; the vLLM parts need the CPU-vLLM extra (FSKU_VLLM=cpu).

    python benchmarks/vllm_speed.py [--prompts 48] [--targets 24] [--mc 200] [--cyclic 40] [--descriptive 20]

Each part runs the project's own code with the environment's settings, first through transformers, then
through vLLM (``backend: vllm``), on the same inputs:
- responses: ``generate_responses`` (the response_generation node) over the first ``--prompts`` prompts of
  the prompt set's corpus part (descriptive questions made from the knowledge base), ``teacher.generation``;
- choice targets: ``teacher_targets`` (the distillation node: every cyclic rotation of each question) on
  ``--targets`` questions made from the knowledge base as ``distillation.choice_targets`` makes them;
- one-pass MC: ``answer_questions`` (inference and validation), closed book, no debiasing, on the 200
  multiple-choice questions of the settings slice (FSKU benchmark, seed 0);
- cyclic MC: the same with ``debias: cyclic`` on the first ``--cyclic`` of them;
- descriptive: ``answer_questions`` on the slice's 20 descriptive questions (``inference.generation``).
Agreement: the share of identical greedy texts (responses, descriptive) and of identical top options, and
the largest option-probability difference over the 200 MC, vLLM against transformers. The same figures
between two transformers runs that differ only in batching (the served batches with shared prefixes
against one row at a time; for text, batches of 16 against 4) are the bfloat16 noise vLLM is judged by.

Targets: responses and descriptive answers >= 2x faster with vLLM, choice targets and MC scoring
>= 1.4x; vLLM's option probabilities differ from transformers' by no more than the noise run's do, and
every question whose top option it changes has a top-two margin within that noise.
Record: benchmarks/results/vllm_speed.<cpu kind>.json, with every question's option probabilities from
both engines. A killed run restarted measures only the parts it had not finished
(data/08_reporting/vllm_speed/partial.json). Needs ``bash scripts/setup_qwen_coder_cpu.sh`` and
../shared/fsku-benchmark; exits 2 without.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from report import catalog_with_chunks, cpu_line, print_table, typed, verdict, write_result

ROOT = Path(__file__).resolve().parents[1]
ENV = "qwen_coder_cpu"
OUT = ROOT / "data/08_reporting/vllm_speed"
ENGINES = ("transformers", "vllm")
logger = logging.getLogger("benchmark.vllm_speed")


class Parts(dict):
    """Each finished part, written to ``partial.json`` at once so that a restart skips it."""

    def __init__(self, path: Path, fresh: bool):
        self.path = path
        if path.is_file() and not fresh:
            super().__init__(json.loads(path.read_text(encoding="utf-8")))
            logger.warning("Resuming: %s already measured", ", ".join(self))

    def __setitem__(self, name, value) -> None:
        super().__setitem__(name, value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self, ensure_ascii=False, indent=1), encoding="utf-8")


def timed(work):
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def with_backend(settings, backend: str, **changes):
    """``settings`` (any block holding backend settings) switched to ``backend``."""
    return settings.model_copy(update={"backend": backend, **changes})


def part_responses(teacher, chunks, templates, params, count: int) -> dict:
    from string import Template

    import pandas as pd

    from fsku_kedro.generation.responses import generate_responses
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.knowledge.corpus_questions import descriptive_questions

    prompts = [Template(templates["answer_descriptive"]).substitute(question=question)
               for _, question in descriptive_questions(chunks, count, params["prompt_set"].seed)][:count]
    frame = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(len(prompts))], "prompt": prompts})
    settings = params["teacher"].generation
    runs = {"transformers": with_backend(settings, "transformers"), "vllm": with_backend(settings, "vllm"),
            "transformers_batch_4": with_backend(settings, "transformers", batch_size=4)}
    out = {"prompts": len(prompts), "max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size}
    texts = {}
    for name, run in runs.items():
        with tempfile.TemporaryDirectory() as tmp:
            answers, seconds = timed(lambda r=run: generate_responses(frame, teacher, ResponseStore(Path(tmp) / "r.jsonl"), r))
        texts[name] = answers.set_index("prompt_id")["response"].to_dict()
        out[f"{name}_s"] = seconds
        out[f"{name}_completion_tokens"] = int(answers["completion_tokens"].sum())
    out["identical_texts"] = same_share(texts["vllm"], texts["transformers"])
    out["identical_texts_noise"] = same_share(texts["transformers_batch_4"], texts["transformers"])
    out["texts"] = texts
    return out


def same_share(first: dict, second: dict) -> float:
    return sum(first[key] == second[key] for key in second) / len(second)


def part_targets(teacher, chunks, templates, distillation, count: int) -> dict:
    from fsku_kedro.distillation.choice_targets import teacher_targets
    from fsku_kedro.generation.backends import vllm_backend
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.knowledge.corpus_questions import multiple_choice_questions
    from fsku_kedro.questions import parse_question, shuffled

    options = distillation.choice_targets
    made = multiple_choice_questions(chunks, count, options.seed, options.negative_share, options.distractors)
    questions = [shuffled(parse_question(f"corpus-{n}", text), options.seed) for n, (_, text, _, _) in enumerate(made)]
    template = templates[options.template]
    out: dict = {"questions": len(questions), "rows": sum(len(q.choices or {}) for q in questions)}
    targets = {}
    for name in ENGINES:
        engine = vllm_backend(teacher, with_backend(options.backend, "vllm")) if name == "vllm" else None
        with tempfile.TemporaryDirectory() as tmp:
            targets[name], seconds = timed(lambda e=engine: teacher_targets(
                questions, teacher, template, ResponseStore(Path(tmp) / "t.jsonl"), {"seed": options.seed},
                options.backend.batch_size, e))
        out[f"{name}_s"] = seconds
        out[f"{name}_s_per_question"] = seconds / len(questions)
    pairs = [(targets["vllm"][q.ID]["target"], targets["transformers"][q.ID]["target"]) for q in questions]
    out["same_top_option"] = sum(max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)
                                 for a, b in pairs) / len(pairs)
    out["largest_target_difference"] = max(abs(x - y) for a, b in pairs for x, y in zip(a, b))
    return out


def answered(items, teacher, templates, settings) -> tuple[list, float]:
    from fsku_kedro.answering.batch_runner import answer_questions

    return timed(lambda: answer_questions(items, teacher, templates, settings, show_progress=True))


def part_mc(teacher, questions, labels, templates, inference, cyclic_count: int) -> dict:
    """One-pass and cyclic MC through the answering service (timed), and the option probabilities of
    every question from both engines and from transformers one row at a time (agreement)."""
    from fsku_kedro.answering.choice_scoring import score_choices
    from fsku_kedro.answering.prompts import PreparedQuestion, build_chat
    from fsku_kedro.evaluation.benchmark_scores import served_settings
    from fsku_kedro.generation.backends import vllm_backend
    from fsku_kedro.parameters.inference import DebiasSettings

    key = {label.ID: label.answer for label in labels}
    mc = [q for q in questions if q.question_type == "multiple_choice"]
    items = [PreparedQuestion(q) for q in mc]
    one_pass = served_settings(inference)
    out: dict = {"questions": len(mc), "cyclic_questions": cyclic_count, "batch_size": one_pass.batch_size}
    for name in ENGINES:
        settings = one_pass.model_copy(update={"generation": with_backend(one_pass.generation, name)})
        rows, seconds = answered(items, teacher, templates, settings)
        out[f"{name}_one_pass_s_per_question"] = seconds / len(items)
        out[f"{name}_one_pass_accuracy"] = sum(r.answer == key[r.ID] for r in rows) / len(rows)
        cyclic = settings.model_copy(update={"debias": DebiasSettings(method="cyclic")})
        rows, seconds = answered(items[:cyclic_count], teacher, templates, cyclic)
        out[f"{name}_cyclic_s_per_question"] = seconds / cyclic_count
        out[f"{name}_cyclic_accuracy"] = sum(r.answer == key[r.ID] for r in rows) / len(rows)
    chats = [build_chat(item, templates, one_pass) for item in items]
    counts = [len(q.choices or {}) for q in mc]
    engine = vllm_backend(teacher, with_backend(one_pass.generation, "vllm"))
    scored = {
        "transformers": score_choices(teacher, chats, counts, batch_size=one_pass.batch_size),
        "vllm": score_choices(teacher, chats, counts, batch_size=one_pass.batch_size, engine=engine),
        "transformers_one_row": score_choices(teacher, chats, counts, batch_size=1, share_prefix=False),
    }
    reference = scored["transformers"]
    for name, against in (("vllm", "transformers"), ("noise", "transformers_one_row")):
        other = scored[against if name == "noise" else name]
        out[f"{name}_different_top_option"] = sum(a.number != b.number for a, b in zip(other, reference))
        out[f"{name}_largest_probability_difference"] = max(
            abs(a.probabilities[n] - b.probabilities[n]) for a, b in zip(other, reference) for n in a.probabilities)
    out["per_question"] = [{"ID": q.ID, "answer": key[q.ID],
                            **{name: [round(c[i].probabilities[n], 6) for n in sorted(c[i].probabilities)]
                               for name, c in scored.items()}} for i, q in enumerate(mc)]
    return out


def part_descriptive(teacher, questions, templates, inference) -> dict:
    from fsku_kedro.answering.prompts import PreparedQuestion
    from fsku_kedro.evaluation.benchmark_scores import served_settings

    items = [PreparedQuestion(q) for q in questions if q.question_type == "descriptive"]
    served = served_settings(inference)
    out: dict = {"questions": len(items), "max_new_tokens": served.generation.max_new_tokens,
                 "batch_size": served.batch_size}
    texts = {}
    for name in ENGINES:
        settings = served.model_copy(update={"generation": with_backend(served.generation, name)})
        rows, seconds = answered(items, teacher, templates, settings)
        texts[name] = {r.ID: r.answer for r in rows}
        out[f"{name}_s_per_question"] = seconds / len(items)
        out[f"{name}_fallbacks"] = sum(r.used_fallback for r in rows)
    out["identical_texts"] = same_share(texts["vllm"], texts["transformers"])
    out["texts"] = texts
    return out


def engine_load_seconds(teacher, settings) -> float:
    from fsku_kedro.generation.backends import vllm_backend
    from fsku_kedro.generation.vllm_engine import ENGINES as SLOT

    SLOT.release()
    _, seconds = timed(lambda: vllm_backend(teacher, with_backend(settings, "vllm")))
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--targets", type=int, default=24)
    parser.add_argument("--mc", type=int, default=200)
    parser.add_argument("--cyclic", type=int, default=40)
    parser.add_argument("--descriptive", type=int, default=20)
    parser.add_argument("--fresh", action="store_true", help="measure every part again")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    from fsku_kedro.evaluation.fsku_benchmark import benchmark_set
    from fsku_kedro.generation.vllm_engine import unavailable_reason
    from fsku_kedro.parameters.inference import BenchmarkSliceSettings
    from fsku_kedro.prompt_templates import read_templates

    if reason := unavailable_reason():
        print(f"vLLM cannot run here: {reason}")
        return 2
    catalog = catalog_with_chunks(ENV)
    mc = catalog.load("fsku_benchmark_mc")
    if mc.empty:
        print("needs ../shared/fsku-benchmark")
        return 2
    questions, labels = benchmark_set(mc, catalog.load("fsku_benchmark_mc_answers"),
                                      catalog.load("fsku_benchmark_descriptive"),
                                      BenchmarkSliceSettings(mc_limit=args.mc, descriptive_limit=args.descriptive,
                                                             seed=0))
    teacher = catalog.load("teacher_model")
    chunks = catalog.load("chunks")
    templates = read_templates(catalog.load("prompt_templates"))
    inference = typed(catalog, "inference")
    params = {"teacher": typed(catalog, "teacher"), "prompt_set": typed(catalog, "response_generation").prompt_set}
    distillation = typed(catalog, "distillation")
    parts = Parts(OUT / "partial.json", args.fresh)
    if "engine_load_s" not in parts:
        parts["engine_load_s"] = engine_load_seconds(teacher, inference.generation)
    if "responses" not in parts:
        parts["responses"] = part_responses(teacher, chunks, templates, params, args.prompts)
    if "choice_targets" not in parts:
        parts["choice_targets"] = part_targets(teacher, chunks, templates, distillation, args.targets)
    if "mc" not in parts:
        parts["mc"] = part_mc(teacher, questions, labels, templates, inference, args.cyclic)
    if "descriptive" not in parts:
        parts["descriptive"] = part_descriptive(teacher, questions, templates, inference)

    r, t, m, d = parts["responses"], parts["choice_targets"], parts["mc"], parts["descriptive"]
    rows = [
        ("responses (prompt set part)", f"{r['prompts']} prompts × ≤{r['max_new_tokens']} tokens",
         f"{r['transformers_s']:.1f} s", f"{r['vllm_s']:.1f} s", r["transformers_s"] / r["vllm_s"], 2.0),
        ("choice targets", f"{t['questions']} questions, {t['rows']} rotations",
         f"{t['transformers_s_per_question']:.2f} s/q", f"{t['vllm_s_per_question']:.2f} s/q",
         t["transformers_s"] / t["vllm_s"], 1.4),
        ("one-pass MC", f"{m['questions']} questions", f"{m['transformers_one_pass_s_per_question']:.3f} s/q",
         f"{m['vllm_one_pass_s_per_question']:.3f} s/q",
         m["transformers_one_pass_s_per_question"] / m["vllm_one_pass_s_per_question"], 1.4),
        ("cyclic MC", f"{m['cyclic_questions']} questions", f"{m['transformers_cyclic_s_per_question']:.3f} s/q",
         f"{m['vllm_cyclic_s_per_question']:.3f} s/q",
         m["transformers_cyclic_s_per_question"] / m["vllm_cyclic_s_per_question"], 1.4),
        ("descriptive answers", f"{d['questions']} questions × ≤{d['max_new_tokens']} tokens",
         f"{d['transformers_s_per_question']:.2f} s/q", f"{d['vllm_s_per_question']:.2f} s/q",
         d["transformers_s_per_question"] / d["vllm_s_per_question"], 2.0),
    ]
    print(f"\nReal teacher {teacher.name} ({str(teacher.model.dtype).removeprefix('torch.')}), CPU: {cpu_line()}; "
          f"vLLM engine load {parts['engine_load_s']:.0f} s (once per process)\n")
    print_table(["work", "measured on", "transformers", "vLLM", "speed-up", "target"],
                [(*row[:4], f"{row[4]:.2f}x", f"≥ {row[5]}x") for row in rows])
    print()
    print_table(["agreement", "vLLM vs transformers", "transformers vs transformers (batching only)"], [
        ("identical greedy responses", f"{r['identical_texts']:.3f}", f"{r['identical_texts_noise']:.3f}"),
        ("MC questions with another top option", f"{m['vllm_different_top_option']} of {m['questions']}",
         f"{m['noise_different_top_option']} of {m['questions']}"),
        ("largest option-probability difference", f"{m['vllm_largest_probability_difference']:.4f}",
         f"{m['noise_largest_probability_difference']:.4f}"),
        ("MC accuracy one pass (transformers / vLLM)",
         f"{m['transformers_one_pass_accuracy']:.3f} / {m['vllm_one_pass_accuracy']:.3f}", ""),
        ("choice targets: same top option / largest difference",
         f"{t['same_top_option']:.3f} / {t['largest_target_difference']:.4f}", ""),
        ("identical descriptive answers", f"{d['identical_texts']:.3f}", ""),
    ])
    path = write_result("vllm_speed", dict(parts), by_cpu_kind=True,
                        models={"teacher": teacher.name, "dtype": str(teacher.model.dtype).removeprefix("torch.")},
                        settings={"environment": ENV, "vllm": inference.generation.vllm.model_dump(),
                                  "slice": {"mc": args.mc, "descriptive": args.descriptive, "seed": 0}},
                        label="real models")
    print(f"\nrecorded in {path.relative_to(ROOT)}")
    margins = flipped_margins(m["per_question"])
    noise = m["noise_largest_probability_difference"]
    print(f"\nquestions whose top option vLLM changes: {len(margins)}; their top-two margins under transformers: "
          f"{', '.join(f'{x:.4f}' for x in margins)} (transformers' own batching moves probabilities by up to {noise:.4f})")
    speed = [verdict(row[4] >= row[5], f"{row[0]}: vLLM >= {row[5]}x transformers' speed") for row in rows]
    same = verdict(m["vllm_largest_probability_difference"] <= noise and all(x <= noise for x in margins),
                   "vLLM's option probabilities move no more than transformers' batching noise, and it changes "
                   "only top options that noise could change")
    return max(*speed, same)


def flipped_margins(per_question: list[dict]) -> list[float]:
    """For each question whose top option differs between vLLM and transformers, transformers' margin
    between its two most probable options."""
    margins = []
    for row in per_question:
        ours, theirs = row["vllm"], row["transformers"]
        if max(range(len(ours)), key=ours.__getitem__) != max(range(len(theirs)), key=theirs.__getitem__):
            top, second = sorted(theirs, reverse=True)[:2]
            margins.append(top - second)
    return sorted(margins)


if __name__ == "__main__":
    sys.exit(main())
