"""distillation: pairs + teacher + student -> per-round adapters, merged students, validation -> the best student.

Round ``n`` is one namespace (``round_1``, ``round_2``, ...) so each round's artefacts are
versioned apart and kedro-viz shows the rounds as stages. Round 1 trains on the pairs of
response_generation; each later round first regenerates the student's responses with the
previous round's merged student (the generation template under ``round_<n>.student``) and
rebuilds the pairs. ``round_0`` validates the undistilled student for the final choice.

The number of rounds shapes the graph. A run's parameters (conf/base, the ``--env`` environment,
``--params``) are resolved before the graph is built: the settings hook passes
``distillation.rounds`` to ``build_for_rounds``, so the graph has exactly that many rounds.
Outside a Kedro session the configured value of conf/base and conf/local is used.
"""

from __future__ import annotations

import functools

from kedro.pipeline import Pipeline, node, pipeline

from fsku_kedro.parameters.distillation import DistillationSettings
from fsku_kedro.pipelines.templates import generation_template, pairs_template

from .nodes import (
    compare_distillation_runs,
    merge_student,
    select_best_round,
    teacher_choice_targets,
    train_student,
    training_curves,
    validate_student,
)

_rounds_for_run: int | None = None
_built_with: int | None = None


def build_for_rounds(rounds: int) -> None:
    """Build the distillation graph with ``rounds`` rounds from now on; a graph already built with
    another count is dropped from Kedro's pipeline registry so that it is built again."""
    global _rounds_for_run
    _rounds_for_run = rounds
    if _built_with is not None and _built_with != rounds:
        from kedro.framework.project import PACKAGE_NAME, pipelines

        pipelines.configure(f"{PACKAGE_NAME}.pipeline_registry")


def configured_rounds() -> int:
    """``distillation.rounds`` of conf/base and conf/local, for a graph built outside a session."""
    from pathlib import Path

    from kedro.framework.project import settings

    from fsku_kedro.parameters import resolve_parameters

    conf_source = Path.cwd() / settings.CONF_SOURCE
    if not conf_source.is_dir():
        return DistillationSettings().rounds
    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(conf_source), **settings.CONFIG_LOADER_ARGS)
    return resolve_parameters(loader["parameters"])["distillation"]["rounds"]


def _for_round(func, round_number: int):
    bound = functools.partial(func, round_number=round_number)
    return functools.update_wrapper(bound, func)


def _validation(student: str, output_prefix: str = "") -> Pipeline:
    return pipeline(
        [
            node(
                validate_student,
                inputs=[
                    student,
                    "teacher_model",
                    "pair_dataset",
                    "sample_questions",
                    "sample_labels",
                    "sample_split",
                    "prompt_templates",
                    "embedder",
                    "fsku_benchmark_mc",
                    "fsku_benchmark_mc_answers",
                    "fsku_benchmark_descriptive",
                    "benchmark_validation_progress",
                    "params:inference",
                    "params:distillation",
                ],
                outputs=[f"{output_prefix}validation_report", f"{output_prefix}validation_metrics",
                         f"{output_prefix}validation_answers"],
                name="validate_student",
            )
        ]
    )


def round_template(round_number: int) -> Pipeline:
    """One round: (regenerate and re-pair,) train, merge, validate."""
    nodes = []
    if round_number > 1:
        regenerate = pipeline(
            generation_template(),
            namespace="student",
            inputs={"prompt_set": "prompt_set", "model": "base_student"},
            parameters={"params:generation": "params:student.generation"},
        )
        nodes.append(regenerate)
        nodes.append(pairs_template())
    nodes.append(
        pipeline(
            [
                node(
                    _for_round(train_student, round_number),
                    inputs=["pair_dataset", "choice_targets", "teacher_model", "base_student", "params:distillation"],
                    outputs=["student_adapter", "training_history", "training_log"],
                    name="train_student",
                ),
                node(training_curves, inputs="training_log", outputs="training_curves", name="plot_training_curves"),
                node(
                    _for_round(merge_student, round_number),
                    inputs=["base_student", "student_adapter"],
                    outputs="distilled_student",
                    name="merge_student",
                ),
            ]
        )
    )
    nodes.append(_validation("distilled_student"))
    return sum(nodes[1:], nodes[0])


def create_pipeline(**kwargs) -> Pipeline:
    global _built_with
    rounds = kwargs.get("rounds") or _rounds_for_run or configured_rounds()
    _built_with = rounds
    evaluation_inputs = ["teacher_model", "sample_questions", "sample_labels", "sample_split", "prompt_templates",
                         "embedder", "fsku_benchmark_mc", "fsku_benchmark_mc_answers", "fsku_benchmark_descriptive",
                         "benchmark_validation_progress"]
    evaluation_params = ["params:distillation", "params:inference"]
    targets = pipeline([
        node(
            teacher_choice_targets,
            inputs=["prompt_set", "chunks", "teacher_model", "prompt_templates", "choice_target_progress",
                    "params:distillation"],
            outputs="choice_targets",
            name="teacher_choice_targets",
        )
    ])
    stages = [
        targets,
        pipeline(
            _validation("student_model"),
            namespace="round_0",
            inputs={name: name for name in ["student_model", "pair_dataset", *evaluation_inputs]},
            parameters=set(evaluation_params),
        )
    ]
    for number in range(1, rounds + 1):
        inputs = {name: name for name in [*evaluation_inputs, "choice_targets"]}
        inputs["base_student"] = "student_model" if number == 1 else f"round_{number - 1}.distilled_student"
        parameters = set(evaluation_params)
        if number == 1:
            inputs["pair_dataset"] = "pair_dataset"
        else:
            inputs |= {"prompt_set": "prompt_set", "teacher.responses": "teacher.responses"}
            parameters |= {"params:response_generation.pairs", "params:student.generation"}
        stages.append(pipeline(round_template(number), namespace=f"round_{number}", inputs=inputs, parameters=parameters))
    reports = [f"round_{n}.validation_report" for n in range(rounds + 1)]
    students = ["student_model"] + [f"round_{n}.distilled_student" for n in range(1, rounds + 1)]
    select = pipeline(
        [
            node(
                select_best_round,
                inputs=["params:distillation", *reports, *students],
                outputs=["distilled_student@model", "distillation_summary"],
                name="select_best_round",
            ),
            node(
                compare_distillation_runs,
                inputs=["distillation_runs", "distillation_summary"],
                outputs=["distillation_comparison", "distillation_comparison_plot"],
                name="compare_distillation_runs",
            ),
        ]
    )
    return pipeline(sum(stages[1:], stages[0]) + select, tags="distillation")
