"""Nodes of the distillation pipeline: train a round, merge it, validate it, keep the best."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer
from fsku_kedro.distillation.choice_targets import question_of, served_chat, target_frame, teacher_targets
from fsku_kedro.distillation.launch import run_launched
from fsku_kedro.distillation.merging import LoraAdapter, extract_adapter, merge_adapter
from fsku_kedro.distillation.training import run_fingerprint, train_round
from fsku_kedro.distillation.validation import teacher_agreement
from fsku_kedro.evaluation.benchmark_scores import benchmark_scores
from fsku_kedro.evaluation.closed_book import fsku_validation
from fsku_kedro.evaluation.fsku_benchmark import held_out_benchmark
from fsku_kedro.evaluation.held_out import held_out_questions
from fsku_kedro.generation.backends import vllm_backend
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.hashing import json_hash, unit_hash
from fsku_kedro.knowledge.corpus_questions import multiple_choice_questions
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.models.bundle import ModelBundle, weights_key
from fsku_kedro.parameters.distillation import CHOICE_TARGET, DistillationSettings, ValidationSettings
from fsku_kedro.parameters.inference import InferenceSettings
from fsku_kedro.plotting import use_korean_font
from fsku_kedro.prompt_templates import read_templates
from fsku_kedro.questions import parse_question, shuffled

logger = logging.getLogger(__name__)

CURVES = ("loss", "kl/chosen", "kl/rejected", "logps/chosen", "logps/rejected", "alpha/chosen", "beta")


def _content_hash(pairs: Any) -> str:
    return json_hash(pairs["train"].to_list())


def teacher_choice_targets(
    prompt_set: pd.DataFrame,
    chunks: pd.DataFrame,
    teacher_model: ModelBundle,
    prompt_templates: dict[str, Callable[[], str]],
    progress: ResponseStore,
    settings: DistillationSettings,
) -> pd.DataFrame:
    """The questions of ``choice_target`` rounds with the teacher's cyclic-averaged option distribution:
    the prompt set's multiple-choice items (in its train / validation split) and
    ``choice_targets.corpus_questions`` made from the knowledge base, each with its options shuffled
    (seeded). Empty when no round of the schedule is a ``choice_target`` round."""
    options = settings.choice_targets
    if CHOICE_TARGET not in settings.losses:
        logger.info("Choice targets: no choice_target round in the schedule, none computed")
        return target_frame([])
    templates = read_templates(prompt_templates)
    questions: list[tuple[CompetitionQuestion, str, str, str]] = []  # question, source, split, right option
    unparsed = 0
    for row in prompt_set[prompt_set["question_type"] == "multiple_choice"].itertuples(index=False):
        text = question_of(str(row.prompt), templates["answer_multiple_choice"])
        question = parse_question(str(row.prompt_id), text) if text else None
        if question is None or not question.choices:
            unparsed += 1
            continue
        questions.append((question, str(row.source), str(row.split), ""))
    if unparsed:
        logger.warning("Choice targets: %d multiple-choice prompts of the prompt set are not in the "
                       "answer_multiple_choice template with numbered options; left out", unparsed)
    corpus = multiple_choice_questions(chunks, options.corpus_questions, options.seed, options.negative_share,
                                       options.distractors)
    for n, (_, text, negative, answer) in enumerate(corpus):
        # The kind is in the id, which keys the stored teacher targets.
        question_id = f"corpus-mc{'-not' if negative else ''}-{options.seed}-{n}"
        split = "validation" if unit_hash(options.seed, question_id) < options.validation_share else "train"
        question = parse_question(question_id, text)
        questions.append((question, "corpus", split, question.choices[str(answer)]))
    if not questions:
        raise ValueError("a choice_target round has no question: the prompt set holds no multiple-choice item in "
                         "the answer_multiple_choice template and distillation.choice_targets.corpus_questions is 0")
    served = [shuffled(question, options.seed) for question, *_ in questions]
    template = templates[options.template]
    targets = teacher_targets(served, teacher_model, template, progress, {"seed": options.seed},
                              options.backend.batch_size, vllm_backend(teacher_model, options.backend))
    rows = [{"question_id": q.ID, "source": source, "split": split, "question": q.Question,
             "prompt": served_chat(q, template)[0]["content"], "option_count": len(q.choices or {}),
             "target": targets[q.ID]["target"], "one_pass": targets[q.ID]["one_pass"],
             "answer": next((int(n) for n, text in (q.choices or {}).items() if right and text == right), 0)}
            for q, (_, source, split, right) in zip(served, questions)]
    frame = target_frame(rows)
    agree = sum(int(np.argmax(r["target"]) == np.argmax(r["one_pass"])) for r in rows)
    logger.info("Choice targets: %d questions (%s); the averaged and the one-pass choice agree on %d",
                len(frame), frame.groupby(["source", "split"]).size().to_dict(), agree)
    return frame


def _training_data_key(method: str, settings: DistillationSettings, pair_dataset: Any,
                       choice_targets: pd.DataFrame) -> str:
    """What a round trains on, for its checkpoint fingerprint: the pairs, or the choice targets and the
    settings that change how training reads them."""
    if method != CHOICE_TARGET:
        return _content_hash(pair_dataset)
    reading = settings.choice_targets.model_dump(include={"temperature", "orders", "label_weight"})
    return json_hash({"reading": reading, "targets": choice_targets.to_dict("records")})


def train_student(
    pair_dataset: Any,
    choice_targets: pd.DataFrame,
    teacher_model: ModelBundle,
    student_model: ModelBundle,
    settings: DistillationSettings,
    round_number: int = 1,
) -> tuple[LoraAdapter, dict[str, list[dict[str, float]]], pd.DataFrame]:
    """Train a LoRA adapter on the pairs (on ``choice_targets`` in a ``choice_target`` round) with round
    ``round_number``'s entry of ``settings.schedule`` (its loss, and its overrides of the loss
    settings and trainer arguments).

    Checkpoints go to ``checkpoint_dir/round_<n>/<fingerprint>``; a restart with the same
    pairs, models and settings resumes from the newest one.
    """
    settings = settings.for_round(round_number)
    method = settings.losses[0]
    training_settings = settings.model_dump(exclude={"validation", "rounds", "keep_base_if_better", "launcher",
                                                     "teacher_signal_dir", "choice_targets"})
    data = _training_data_key(method, settings, pair_dataset, choice_targets)
    run = run_fingerprint(method, training_settings, weights_key(student_model.name, student_model.model),
                          teacher_model.name, data)
    output_dir = Path(settings.checkpoint_dir) / f"round_{round_number}" / run
    what = (f"{int((choice_targets['split'] == 'train').sum())} choice targets" if method == CHOICE_TARGET
            else f"{len(pair_dataset['train'])} pairs")
    logger.info("Round %d: %s on %s, checkpoints in %s", round_number, method, what, output_dir)
    if settings.launcher.type == "accelerate":  # one node run; accelerate starts the ranks
        adapter, log_history = run_launched(method, student_model, teacher_model, pair_dataset, settings, output_dir)
    else:
        # The trainer wraps the model with LoRA in place; the input bundle stays untouched.
        student = ModelBundle(copy.deepcopy(student_model.model), student_model.tokenizer, student_model.name)
        trained, log_history = train_round(method, student, teacher_model, pair_dataset, settings, output_dir,
                                           choice_targets=choice_targets)
        adapter = extract_adapter(trained)
    history: dict[str, list[dict[str, float]]] = {}
    steps = max((int(r.get("step", 0)) for r in log_history), default=0)
    seen = max((float(r.get("num_input_tokens_seen", 0)) for r in log_history), default=0.0)
    runtime = next((float(r["train_runtime"]) for r in reversed(log_history) if "train_runtime" in r), 0.0)
    history["summary.steps"] = [{"value": float(steps), "step": steps}]
    if seen and runtime:
        history["summary.tokens_per_second"] = [{"value": seen / runtime, "step": steps}]
    for record in log_history:
        step = int(record.get("step", 0))
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                history.setdefault(key.replace("/", "."), []).append({"value": float(value), "step": step})
    return adapter, history, pd.DataFrame(log_history).assign(method=method, round=round_number)


def merge_student(student_model: ModelBundle, student_adapter: LoraAdapter, round_number: int = 1) -> ModelBundle:
    """Fold the round's adapter into (a copy of) the student's weights."""
    base = ModelBundle(copy.deepcopy(student_model.model), student_model.tokenizer, student_model.name)
    base_name = student_model.name.split("+distilled-r")[0]
    return merge_adapter(base, student_adapter, name=f"{base_name}+distilled-r{round_number}")


def training_curves(training_log: pd.DataFrame) -> plt.Figure:
    """Loss, KL terms, log-probabilities and schedules over optimizer steps."""
    present = [c for c in CURVES if c in training_log.columns and training_log[c].notna().any()]
    use_korean_font()
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(3.2 * max(len(present), 1), 2.8), squeeze=False)
    for ax, column in zip(axes[0], present):
        rows = training_log[["step", column]].dropna()
        ax.plot(rows["step"], rows[column], marker="o", markersize=2)
        ax.set_title(column)
        ax.set_xlabel("step")
    if "method" in training_log.columns and len(training_log):
        fig.suptitle(f"round {training_log['round'].iloc[0]}: {training_log['method'].iloc[0]}", fontsize=9)
    fig.tight_layout()
    return fig


def validate_student(
    student: ModelBundle,
    teacher_model: ModelBundle,
    pair_dataset: Any,
    sample_questions: list[CompetitionQuestion],
    sample_labels: list[LabelledAnswer],
    sample_split: pd.DataFrame,
    prompt_templates: dict[str, Callable[[], str]],
    embedder: Embedder,
    fsku_benchmark_mc: pd.DataFrame,
    fsku_benchmark_mc_answers: pd.DataFrame,
    fsku_benchmark_descriptive: pd.DataFrame,
    benchmark_progress: ResponseStore,
    inference: InferenceSettings,
    settings: DistillationSettings,
) -> tuple[dict[str, Any], dict[str, dict[str, float]], pd.DataFrame]:
    """FSKU score on the held-out sample questions, token KL / NLL against the teacher on the held-out
    pairs (the validation split, else the train split), and with ``validation.fsku_benchmark`` the
    served path's scores on held-out FSKU benchmark questions (``benchmark_*``)."""
    validation = settings.validation
    questions, labels = held_out_questions(sample_questions, sample_labels, sample_split)
    templates = read_templates(prompt_templates)
    scores, answers = fsku_validation(student, questions, labels, templates, embedder, inference)
    split = "validation" if "validation" in pair_dataset else "train"
    pairs = pair_dataset[split].select(range(min(len(pair_dataset[split]), validation.max_pairs)))
    agreement = teacher_agreement(student, teacher_model, pairs, batch_size=validation.batch_size,
                                  max_length=validation.max_length, chunk_size=settings.distillm.loss_chunk_size)
    held_out = validation.fsku_benchmark
    benchmark, benchmark_answers = {}, []
    if held_out.mc_questions or held_out.descriptive_questions:
        if fsku_benchmark_mc.attrs.get("missing") and fsku_benchmark_descriptive.attrs.get("missing"):
            logger.warning("Validation: the FSKU benchmark files are absent (%s); its held-out questions are skipped",
                           fsku_benchmark_mc.attrs.get("source"))
        sets = held_out_benchmark(fsku_benchmark_mc, fsku_benchmark_mc_answers, fsku_benchmark_descriptive, held_out)
        benchmark, benchmark_answers = benchmark_scores(student, sets, templates, embedder, inference,
                                                        benchmark_progress)
    report = {"model": student.name, "pair_split": split, **scores, **agreement, **benchmark}
    logger.info("Validation of %s: %s", student.name, {k: v for k, v in report.items() if isinstance(v, float)})
    metrics = {k: {"value": float(v), "step": 0} for k, v in report.items() if isinstance(v, (int, float))}
    return report, metrics, pd.DataFrame(answers + benchmark_answers)


def selection_figure(report: dict[str, Any], validation: ValidationSettings) -> float:
    """The figure a round is selected by: its FSKU score, or its held-out benchmark MC accuracy averaged
    over the option orders validation measured."""
    if validation.select_by == "fsku_score":
        return float(report["fsku_score"])
    orders = validation.fsku_benchmark.option_orders
    return sum(float(report[f"benchmark_{order}_mc_accuracy"]) for order in orders) / len(orders)


def select_best_round(settings: DistillationSettings, *reports_and_students: Any) -> tuple[ModelBundle, pd.DataFrame]:
    """Keep the student with the best ``validation.select_by`` figure (ties: the lower token KL).

    Arguments: the reports of rounds 0..R, then the students of rounds 0..R, round 0 being the
    undistilled student; it is a candidate only when ``keep_base_if_better`` is on.
    """
    half = len(reports_and_students) // 2
    reports, students = reports_and_students[:half], reports_and_students[half:]
    if settings.rounds != half - 1:
        raise ValueError(
            f"distillation.rounds is {settings.rounds} but the graph holds {half - 1} rounds; the graph is built "
            "from the run's parameters in a Kedro session (kedro run), not when pipelines are built by hand"
        )
    candidates = range(0 if settings.keep_base_if_better else 1, half)
    figures = [selection_figure(report, settings.validation) for report in reports]
    best = max(candidates, key=lambda r: (figures[r], -reports[r]["token_kl"]))
    table = pd.DataFrame([{"round": r, **report, "selection_figure": figures[r], "selected": r == best}
                          for r, report in enumerate(reports)])
    logger.info("Selected round %d (%s): %s %.4f", best, students[best].name, settings.validation.select_by,
                figures[best])
    return students[best], table


COMPARISON_COLUMNS = ["run", "run_id", "started", "losses", "student", "rounds", "steps", "tokens_per_second",
                      "token_kl", "teacher_response_nll", "fsku_score", "best_round_fsku_score",
                      "benchmark_own_mc_accuracy", "benchmark_shuffled_mc_accuracy", "benchmark_own_descriptive_score"]


def compare_distillation_runs(runs: pd.DataFrame, distillation_summary: pd.DataFrame) -> tuple[pd.DataFrame, plt.Figure]:
    """One row per distillation run of the MLflow experiment (this one included): its loss schedule,
    student, total optimizer steps, training tokens/s, and the last round's held-out token KL,
    teacher-response NLL and FSKU score (with the best round's score), and its held-out FSKU benchmark
    scores where validation measured them."""
    rows = []
    for run in runs.to_dict("records") if len(runs) else []:
        losses = run.get("tags.losses")
        if not isinstance(losses, str) or not losses:
            continue
        count = len(losses.split(","))
        metric = lambda name: run.get(f"metrics.{name}", float("nan"))
        per_round = [metric(f"round_{n}.validation_metrics.fsku_score") for n in range(1, count + 1)]
        speeds = [metric(f"round_{n}.training_history.summary.tokens_per_second") for n in range(1, count + 1)]
        rows.append({
            "run": run.get("tags.mlflow.runName", ""), "run_id": run["run_id"], "started": run.get("start_time"),
            "losses": losses.replace(",", "→"), "student": run.get("tags.student", ""), "rounds": count,
            "steps": sum(metric(f"round_{n}.training_history.summary.steps") for n in range(1, count + 1)),
            "tokens_per_second": float(np.nanmean(speeds)) if not np.all(np.isnan(speeds)) else float("nan"),
            "token_kl": metric(f"round_{count}.validation_metrics.token_kl"),
            "teacher_response_nll": metric(f"round_{count}.validation_metrics.teacher_response_nll"),
            "fsku_score": per_round[-1], "best_round_fsku_score": float(np.nanmax(per_round)) if per_round else float("nan"),
            **{name: metric(f"round_{count}.validation_metrics.{name}") for name in COMPARISON_COLUMNS[-3:]},
        })
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS).sort_values("started").reset_index(drop=True)
    logger.info("Distillation runs compared: %d (this run's summary: %d rounds)", len(table), len(distillation_summary) - 1)
    use_korean_font()
    figure, axes = plt.subplots(1, 2, figsize=(10, 0.5 * max(len(table), 2) + 1.5))
    labels = [f"{row.losses} ({row.run_id[:6]})" for row in table.itertuples(index=False)]
    for axis, column, title in ((axes[0], "token_kl", "held-out token KL (last round)"),
                                (axes[1], "fsku_score", "held-out FSKU score (last round)")):
        axis.barh(labels, table[column])
        axis.set_title(title, fontsize=9)
        axis.invert_yaxis()
    figure.tight_layout()
    return table, figure
