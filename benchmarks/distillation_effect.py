"""Does it distil? Held-out teacher-student agreement before and after equal training, per method,
and the training throughput on CPU, on the project's default models and pairs.

    python benchmarks/distillation_effect.py [--steps 20] [--methods distillm_v2 kd gkd seqkd dpo]

Needs the pair dataset of a previous run (``kedro run --pipeline response_generation``). Every
method starts from the same student, trains ``--steps`` optimizer steps on the same train
pairs with the project's distillation parameters (LoRA, batch size, learning rate), and is
measured on the held-out (validation) pairs: the mean per-token KL(teacher || student) and the
student's NLL of the teacher's responses. Lower is better for both.

Target: distillm_v2 lowers the held-out token KL. The other rows are reported as they come.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
import time
from pathlib import Path

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from report import print_table, verdict

from fsku_kedro.distillation.merging import extract_adapter, merge_adapter
from fsku_kedro.distillation.training import train_round
from fsku_kedro.distillation.validation import teacher_agreement, tokenise_response
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.distillation import TrainingSettings

ROOT = Path(__file__).resolve().parents[1]


def _tokens_per_pair(tokenizer, pairs, max_length: int) -> float:
    total = 0
    for row in pairs:
        for side in ("chosen", "rejected"):
            ids, _ = tokenise_response(tokenizer, row["prompt"], row[side], max_length)
            total += len(ids)
    return total / max(len(pairs), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", nargs="+", default=["distillm_v2", "kd", "gkd", "seqkd", "dpo"])
    parser.add_argument("--learning-rate", type=float, help="override distillation.training.learning_rate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT) as session:
        context = session.load_context()
        catalog = context.catalog
        if not catalog.exists("pair_dataset"):
            print("no pair dataset yet: run `kedro run --pipeline response_generation` first")
            return 2
        pairs = catalog.load("pair_dataset")
        teacher = catalog.load("teacher_model")
        student = catalog.load("student_model")
        parameters = context.params["distillation"]
    held_out = pairs["validation"] if "validation" in pairs else pairs["train"]
    overrides = {"max_steps": args.steps, "save_steps": 10**6, "eval_strategy": "no", "disable_tqdm": True}
    if args.learning_rate:
        overrides["learning_rate"] = args.learning_rate
    training = TrainingSettings.model_validate({**parameters.training.as_kwargs(), **overrides})
    parameters = parameters.model_copy(update={"training": training})
    tokens_per_pair = _tokens_per_pair(student.tokenizer, pairs["train"], training.max_length)
    before = teacher_agreement(student, teacher, held_out)

    rows = [["before training", "-", "-", "-", f"{before['token_kl']:.4f}", f"{before['teacher_response_nll']:.4f}"]]
    results = {}
    for method in args.methods:
        trainee = ModelBundle(copy.deepcopy(student.model), student.tokenizer, student.name, student.path)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            trained, _ = train_round(method, trainee, teacher, pairs, parameters, Path(tmp))
            seconds = time.perf_counter() - start
        base = ModelBundle(copy.deepcopy(student.model), student.tokenizer, student.name)
        merged = merge_adapter(base, extract_adapter(trained), name=f"{student.name}+{method}")
        after = teacher_agreement(merged, teacher, held_out)
        results[method] = after
        pairs_seen = args.steps * training.per_device_train_batch_size * training.gradient_accumulation_steps
        rows.append([method, args.steps, f"{seconds:.1f}", f"{pairs_seen * tokens_per_pair / seconds:.0f}",
                     f"{after['token_kl']:.4f}", f"{after['teacher_response_nll']:.4f}"])

    print(f"teacher {teacher.name}, student {student.name}; {len(pairs['train'])} train pairs, "
          f"{len(held_out)} held-out pairs ({int(before['response_tokens'])} response tokens); "
          f"batch {training.per_device_train_batch_size}, lr {training.learning_rate}, "
          f"LoRA r={parameters.lora.r}; CPU\n")
    print_table(["method", "steps", "train s", "train tokens/s", "held-out token KL", "teacher-response NLL"], rows)
    if "distillm_v2" not in results:
        return verdict(True, "no target checked (distillm_v2 not run)")
    return verdict(results["distillm_v2"]["token_kl"] < before["token_kl"], "distillm_v2 lowers the held-out token KL")


if __name__ == "__main__":
    sys.exit(main())
