"""Which student to distil into: the real teacher (Qwen2.5-Coder-1.5B-Instruct, ``qwen_coder_cpu``)
depth-pruned to 26, 24, 22 and 20 of its 28 layers, the removed layers chosen by block influence or
evenly spaced, judged before any training (``teacher 28``: the unpruned teacher on the same
questions, for reference).

    python benchmarks/student_depth.py [--only "block_influence 26" ...] [--questions 200] [--cyclic]

Per candidate, on the multiple-choice items of the settings slice (200 of the FSKU benchmark, seed
0; ``--questions`` takes n of them by a seeded hash), closed book in the served template,
through the answering code (``option_scorer``, ``answering/debias.py``):

- single-pass MC accuracy, raw and with PriDe (its prior from the inference settings' 20 seeded
  estimation questions under every rotation), and with ``--cyclic`` the average over all rotations;
- CPU seconds per scored sequence (one pass per question) and the answer shares;
- perplexity on the 32 held-out corpus chunks of the compression benchmark (the same texts as
  ``real_teacher_compression.no_bf16.json``'s float32 15.86).

Every scored sequence is kept in data/08_reporting/student_depth/<candidate>.jsonl and in the
committed record (benchmarks/results/student_depth.json), so a killed run, or a fresh checkout,
scores only what is missing. Real models; no target: the table is read to choose the student.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_teacher_quality import ROOT, _plain, _teacher_source, context, held_out_chunks
from report import RESULTS, cpu_line, derived_student, print_table, write_result

OUT = ROOT / "data/08_reporting/student_depth"
RECORD = RESULTS / "student_depth.json"
CANDIDATES = [f"{selection} {keep}" for keep in (26, 24, 22, 20) for selection in ("block_influence", "evenly_spaced")]
CANDIDATES.append("teacher 28")  # the unpruned teacher on the same questions, for reference
logger = logging.getLogger("benchmark.student_depth")


class ScoreCache:
    """Option probabilities per scored question text for one candidate: read from its progress file
    and the committed record, appended as batches finish."""

    def __init__(self, name: str, committed: dict, on_add=None):
        self.on_add = on_add or (lambda cache: None)
        self.path = OUT / f"{name.replace(' ', '_')}.jsonl"
        self.scores: dict[str, list[float]] = dict(committed.get("scores", {}))
        self.cpu_seconds, self.sequences = committed.get("cpu_seconds", 0.0), committed.get("timed_sequences", 0)
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                self.scores.update(row["scores"])
                self.cpu_seconds, self.sequences = row["cpu_seconds"], row["timed_sequences"]

    def add(self, scores: dict[str, list[float]], cpu_seconds: float) -> None:
        self.scores.update(scores)
        self.cpu_seconds += cpu_seconds
        self.sequences += len(scores)
        OUT.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"scores": scores, "cpu_seconds": self.cpu_seconds,
                                     "timed_sequences": self.sequences}) + "\n")
        self.on_add(self)


def _key(question) -> str:
    from fsku_kedro.hashing import stable_hash

    return f"{question.ID}:{stable_hash(question.Question, length=12)}"


def cached_scorer(score, cache: ScoreCache, batch_size: int):
    """``score`` through ``cache``: only unseen question texts reach the model, in batches."""

    def wrapped(questions):
        missing = list(dict.fromkeys(_key(q) for q in questions if _key(q) not in cache.scores))
        by_key = {_key(q): q for q in questions}
        for start in tqdm(range(0, len(missing), batch_size), desc="scoring", disable=not missing):
            keys = missing[start : start + batch_size]
            began = time.process_time()
            probabilities = score([by_key[k] for k in keys])
            cache.add({k: [round(p[n], 6) for n in sorted(p)] for k, p in zip(keys, probabilities)},
                      time.process_time() - began)
        return [{n: p for n, p in enumerate(cache.scores[_key(q)], start=1)} for q in questions]

    return wrapped


def measured_on(dtype: str) -> dict[str, str]:
    from fsku_kedro.models.compute_dtype import resolve_dtype

    return {"cpu": cpu_line(), "dtype": resolve_dtype(dtype)}


def measure(name: str, mc, labels, catalog, held_out, cyclic: bool, committed: dict, on_add=None) -> dict:
    from fsku_kedro.answering.debias import cyclic_scores, debiased, estimate_prior
    from fsku_kedro.answering.mc_strategy import option_scorer
    from fsku_kedro.answering.prompts import PreparedQuestion
    from fsku_kedro.hashing import unit_hash
    from fsku_kedro.models.loading import load_bundle
    from fsku_kedro.pipelines.compression.nodes import perplexity
    from fsku_kedro.prompt_templates import read_templates

    selection, keep = name.rsplit(" ", 1)
    settings = _plain(catalog)
    teacher_dir, _ = _teacher_source(catalog)
    if selection == "teacher":
        model, kept = load_bundle(teacher_dir, settings.dtype, False, "qwen-coder-teacher"), list(range(int(keep)))
    else:
        model = derived_student(catalog, teacher_dir, selection, int(keep), settings.dtype,
                                ROOT / f"data/06_models/base/pruning_chunks/{selection}_{keep}")
        kept = json.loads((Path(model.path) / "config.json").read_text())["depth_kept_layers"]
    items = [PreparedQuestion(q) for q in mc]
    cache = ScoreCache(name, committed, on_add)
    templates = read_templates(catalog.load("prompt_templates"))
    score = cached_scorer(option_scorer(model, items, templates, settings, False),
                          cache, settings.batch_size)
    key = {label.ID: int(label.answer) for label in labels if label.question_type == "multiple_choice"}

    def best(probabilities: dict[int, float]) -> int:
        return max(probabilities, key=lambda n: (probabilities[n], -n))

    def summary(picks: list[int]) -> dict:
        shares = Counter(picks)
        return {"mc_accuracy": sum(p == key[q.ID] for p, q in zip(picks, mc)) / len(mc),
                "answered": {str(n): shares[n] for n in sorted(shares)}}

    one_pass = score(mc)
    # PriDe as the inference settings configure it: its estimation questions, then a divided-out prior.
    chosen = sorted(mc, key=lambda q: unit_hash(settings.debias.seed, "pride", q.ID))
    prior = estimate_prior(chosen[: settings.debias.estimation_questions], score)
    result = {"questions": len(mc), "layers": len(kept), "kept_layers": kept, "raw": summary([best(p) for p in one_pass]),
              "pride": summary([best(debiased(p, prior)) for p in one_pass]),
              "prior": {str(n): [round(s, 4) for s in shares] for n, shares in prior.items()}}
    if cyclic:
        result["cyclic"] = summary([best(s) for s in cyclic_scores(mc, score)])
    result["perplexity"] = committed.get("perplexity") or perplexity(model, held_out, 256)
    result |= {**measured_on(settings.dtype), "cpu_seconds_per_sequence": cache.cpu_seconds / max(cache.sequences, 1),
               "cpu_seconds": cache.cpu_seconds, "timed_sequences": cache.sequences, "scores": cache.scores}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=CANDIDATES, default=CANDIDATES)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--cyclic", action="store_true", help="also average over every rotation (n passes each)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from fsku_kedro.hashing import unit_hash

    found = context()
    if found is None:
        print("FSKU benchmark files not found; nothing to measure")
        return 2
    catalog, questions, labels = found
    # The slice keeps file order (grouped by topic); a seeded order makes any first n a random subset.
    mc = sorted((q for q in questions if q.question_type == "multiple_choice"),
                key=lambda q: unit_hash(0, "student_depth", q.ID))[: args.questions]
    held_out = held_out_chunks(catalog)
    previous = json.loads(RECORD.read_text(encoding="utf-8")) if RECORD.is_file() else {}
    figures = dict(previous.get("figures", {}))

    def record() -> None:
        write_result("student_depth", figures, questions=len(mc), models={"teacher": "Qwen2.5-Coder-1.5B-Instruct"},
                     evaluation="n MC of the FSKU settings slice (seed 0) by a seeded hash, own option order, closed book; "
                     "perplexity on 32 held-out corpus chunks (256 tokens)")

    def partial(name: str, cache: ScoreCache) -> None:
        # Scored sequences go to the record as they finish: a fresh checkout resumes from it.
        figures[name] = {"partial": True, **here, "scores": cache.scores, "cpu_seconds": cache.cpu_seconds,
                         "timed_sequences": cache.sequences, **({"perplexity": figures[name]["perplexity"]}
                                                                 if "perplexity" in figures.get(name, {}) else {})}
        record()

    here = measured_on(_plain(catalog).dtype)
    for name in args.only:
        committed = figures.get(name, {})
        # Scores and times of another CPU or dtype are not mixed in: that candidate starts again.
        where = {"cpu": committed.get("cpu", previous.get("cpu")), "dtype": committed.get("dtype", "float32")}
        if committed and where != here:
            logger.warning("%s was measured on %s; this machine is %s: measuring it again", name, where, here)
            committed = {}
            (OUT / f"{name.replace(' ', '_')}.jsonl").unlink(missing_ok=True)
        figures[name] = measure(name, mc, labels, catalog, held_out, args.cyclic, committed,
                                lambda cache, name=name: partial(name, cache))
        record()
    print(f"\n{len(mc)} MC questions of the settings slice, closed book, real teacher pruned\n")
    rows = []
    for name in args.only:
        r = figures[name]
        rows.append([name, r["layers"], f"{r['raw']['mc_accuracy']:.3f}", f"{r['pride']['mc_accuracy']:.3f}",
                     f"{r['cyclic']['mc_accuracy']:.3f}" if "cyclic" in r else "",
                     f"{r['perplexity']:.2f}" if math.isfinite(r["perplexity"]) else "n/a",
                     f"{r['cpu_seconds_per_sequence']:.1f}",
                     " / ".join(str(r["raw"]["answered"].get(str(n), 0)) for n in range(1, 5))])
    print_table(["candidate", "layers", "raw", "PriDe", "cyclic", "perplexity", "CPU s / sequence",
                 "raw picks 1/2/3/4"], rows)
    print(f"\nrecorded in {RECORD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
