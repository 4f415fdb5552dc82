"""Training step time with and without the teacher-signal cache, in one run.

    python benchmarks/teacher_signal_speed.py [--env base] [--loss kd] [--steps 6]

The environment's teacher and student (the default: SmolLM2-135M-Instruct and its 10-layer
pruned student), LoRA as configured, pairs made of the sample questions with knowledge-base
chunks as the teacher's responses (about 200 tokens) and a short student response. Three trainings
of ``--steps`` steps over the same pairs: the teacher run on every step (no cache), the first
epoch filling the cache, and a second trainer reading it (every later epoch, round and arm).
Real models; times are wall seconds per optimizer step, the first step of each left out.

Target: reading the cache makes a step at least 1.3x faster than running the teacher.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import catalog_with_chunks, print_table, verdict, write_result

TARGET = 1.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--loss", default="kd")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()

    from datasets import Dataset, DatasetDict
    from transformers import TrainerCallback

    from fsku_kedro.distillation.training import build_trainer
    from fsku_kedro.parameters.distillation import DistillationSettings
    from fsku_kedro.pipelines.response_generation.nodes import derive_student

    catalog = catalog_with_chunks(None if args.env == "base" else args.env)
    teacher = catalog.load("teacher_model")
    lora = DistillationSettings.model_validate(catalog.load("params:distillation")).lora
    questions = catalog.load("sample_questions")
    chunks = catalog.load("chunks")["content"].astype(str).tolist()
    batch = 2
    rows = [{"prompt": [{"role": "user", "content": q.Question}],
             "chosen": [{"role": "assistant", "content": chunks[i % len(chunks)][:600]}],
             "rejected": [{"role": "assistant", "content": "잘 모르겠습니다. 관련 규정을 확인하세요."}]}
            for i, q in enumerate(questions[: args.steps * batch])]
    pairs = DatasetDict({"train": Dataset.from_list(rows)})

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *_, **__):
            self.ends.append(time.perf_counter())

    work = Path(tempfile.mkdtemp(prefix="teacher-signal-"))
    results = {}
    for name, cache in (("teacher every step", None), ("filling the cache", "signal"), ("reading the cache", "signal")):
        settings = DistillationSettings(
            teacher_signal_dir=str(work / cache) if cache else None,
            lora=lora,
            training={"max_steps": args.steps, "per_device_train_batch_size": batch, "save_steps": 10_000,
                      "eval_strategy": "no", "logging_steps": 1, "disable_tqdm": True},
        )
        # A fresh student per training, loaded again rather than copied: the real pair's student takes
        # 6 GB in float32, and the teacher and one student are all that fit beside the activations.
        fresh = derive_student(catalog.load("student_source"), catalog.load("chunks"),
                               catalog.load("params:student_shape"))
        student_name = fresh.name
        clock = StepClock()
        trainer = build_trainer(args.loss, fresh, teacher, pairs, settings, work / name.replace(" ", "_"), [clock])
        start = time.perf_counter()
        trainer.train()
        steps = [b - a for a, b in zip([start, *clock.ends], clock.ends)][1:]
        signal = getattr(trainer, "teacher_signal", None)
        results[name] = {"seconds_per_step": sum(steps) / len(steps), "steps_timed": len(steps),
                         "cache_hits": signal.hits if signal else 0, "cache_misses": signal.misses if signal else 0,
                         "loss": trainer.state.log_history[-2].get("loss")}
        del trainer, fresh
        gc.collect()

    base = results["teacher every step"]["seconds_per_step"]
    table = [(name, f"{r['seconds_per_step']:.2f}", f"{base / r['seconds_per_step']:.2f}x", r["cache_hits"],
              r["cache_misses"]) for name, r in results.items()]
    print(f"{args.loss}, {args.steps} steps of {batch} pairs, teacher {teacher.name}, student {student_name} "
          "(real models)")
    print_table(("training", "s / step", "speed-up", "rows read", "rows computed"), table)
    speedup = base / results["reading the cache"]["seconds_per_step"]
    # The tiny defaults keep one record; the real pair's depends on the CPU kind (its dtype follows it).
    write_result(f"teacher_signal_speed_{args.env}", results, by_cpu_kind=args.env != "base",
                 models={"teacher": teacher.name, "student": student_name},
                 settings={"loss": args.loss, "steps": args.steps, "batch_pairs": batch, "lora": lora.model_dump()},
                 speedup=round(speedup, 2))
    return verdict(speedup >= TARGET, f"reading the cache >= {TARGET}x faster per step than running the teacher "
                                      f"(measured {speedup:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
