"""Is the debiased multiple-choice target worth distilling? The real teacher's one-pass answer against
its answer averaged over the cyclic rotations of the options, with every question's options shuffled
(seeded), as the competition's test set shuffles them and as ``choice_target`` rounds train.

    python benchmarks/choice_target_gain.py [--questions 100] [--seed 0]

The first ``--questions`` multiple-choice items of the settings slice (200 of the FSKU benchmark,
seed 0), closed book in the served template, through the same code that computes the targets
(``distillation/choice_targets.py``); a killed run resumes from its progress file. Real model
(``qwen_coder_cpu``'s teacher); no target, the table is the result. Each accuracy is also given on
the questions whose stem asks which option is not correct (``questions.asks_for_incorrect``) and
on the others.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_teacher_quality import ROOT, _teacher, context
from report import print_table, write_result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from fsku_kedro.distillation.choice_targets import teacher_targets
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.prompt_templates import read_templates
    from fsku_kedro.questions import asks_for_incorrect, shuffled

    found = context()
    if found is None:
        print("no FSKU benchmark: nothing to measure")
        return 0
    catalog, questions, labels = found
    answers = {label.ID: int(label.answer) for label in labels if label.question_type == "multiple_choice"}
    mc = [q for q in questions if q.question_type == "multiple_choice"][: args.questions]
    served = [shuffled(q, args.seed) for q in mc]
    # The shuffled position of each question's answer.
    keys = {s.ID: next(int(n) for n, text in s.choices.items() if text == q.choices[str(answers[q.ID])])
            for q, s in zip(mc, served)}
    template = read_templates(catalog.load("prompt_templates"))["closed_book_multiple_choice"]
    teacher = _teacher(catalog, catalog.load("params:inference").dtype)
    store = ResponseStore(ROOT / "data/08_reporting/choice_target_gain/progress.jsonl")
    started = time.process_time()
    targets = teacher_targets(served, teacher, template, store, {"seed": args.seed}, batch_size=4)
    cpu_seconds = time.process_time() - started

    negative = {q.ID for q in mc if asks_for_incorrect(q)}

    def accuracy(field: str, kept=lambda qid: True) -> float:
        picks = {qid: max(range(len(t[field])), key=t[field].__getitem__) + 1 for qid, t in targets.items()
                 if kept(qid)}
        return sum(picks[qid] == keys[qid] for qid in picks) / len(picks) if picks else float("nan")

    def by_stem(field: str) -> dict[str, float]:
        return {"negative_stems": accuracy(field, lambda qid: qid in negative),
                "other_stems": accuracy(field, lambda qid: qid not in negative)}

    def shares(field: str) -> list[int]:
        counts = [0] * 4
        for t in targets.values():
            pick = max(range(len(t[field])), key=t[field].__getitem__)
            if pick < 4:
                counts[pick] += 1
        return counts

    one, cyclic = accuracy("one_pass"), accuracy("target")
    print(f"{len(mc)} FSKU questions of the settings slice, options shuffled (seed {args.seed}), closed book, "
          f"teacher {teacher.name} (real model)")
    print_table(("answer", "MC accuracy", f"on {len(negative)} negative stems", "on the others",
                 "picks of 1/2/3/4"), [
        (name, f"{accuracy(field):.3f}", *(f"{v:.3f}" for v in by_stem(field).values()),
         " / ".join(map(str, shares(field))))
        for name, field in (("one pass", "one_pass"), ("cyclic average (the choice_target)", "target"))])
    key_counts = [sum(1 for k in keys.values() if k == n) for n in range(1, 5)]
    print(f"answer key after shuffling: {' / '.join(map(str, key_counts))}")
    write_result("choice_target_gain", {"one_pass_accuracy": one, "cyclic_accuracy": cyclic,
                                        "one_pass_picks": shares("one_pass"), "cyclic_picks": shares("target"),
                                        "key": key_counts, "negative_stems": len(negative),
                                        "one_pass_by_stem": by_stem("one_pass"), "cyclic_by_stem": by_stem("target")},
                 questions=len(mc), models={"teacher": teacher.name},
                 settings={"seed": args.seed, "template": "closed_book_multiple_choice",
                           "dtype": catalog.load("params:inference").dtype},
                 cpu_seconds_this_run=round(cpu_seconds, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
