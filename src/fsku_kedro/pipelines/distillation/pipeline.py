"""distillation: pairs + teacher + student -> per-round adapters, merged students, validation -> the best student.

Round ``n`` is one namespace (``round_1``, ``round_2``, ...) so each round's artefacts are
versioned apart and kedro-viz shows the rounds as stages. Round 1 trains on the pairs of
response_generation; each later round first regenerates the student's responses with the
previous round's merged student (the generation template under ``round_<n>.student``) and
rebuilds the pairs. ``round_0`` validates the undistilled student for the final choice.

The number of rounds shapes the graph, and Kedro builds its pipelines before it reads a run's
``--env`` and ``--params`` (kedro-org/kedro#2627). So the graph follows the configuration files of
the environment named by ``KEDRO_ENV`` (conf/base and conf/local when unset) and the runtime parameters
the kedro command exported, read afresh each time it is built: a ``kedro`` command exports its
``--env`` and ``--params`` before it runs (``fsku_kedro.cli_hooks``). A session made in Python whose
parameters want another count than the graph it gets is refused before any node runs
(``SettingsHook``), with the way through.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from kedro.pipeline import Pipeline, node, pipeline

from fsku_kedro.parameters.distillation import DistillationSettings
from fsku_kedro.pipelines.templates import generation_template, pairs_template
from fsku_kedro.run_params import exported_run_params

from .nodes import (
    compare_distillation_runs,
    merge_student,
    select_best_round,
    teacher_choice_targets,
    train_student,
    training_curves,
    validate_student,
)

logger = logging.getLogger(__name__)


def configured_rounds(env: str | None = None, runtime_params: dict | None = None) -> int:
    """``distillation.rounds`` of conf/base merged with ``env`` (by default ``KEDRO_ENV``, else conf/local)
    and ``runtime_params`` (by default those the kedro command exported, ``run_params.RUN_PARAMS``); the
    default when the distillation block does not validate (the run's own check then reports why)."""
    from kedro.framework.project import settings

    conf_source = Path.cwd() / settings.CONF_SOURCE
    if not conf_source.is_dir():
        return DistillationSettings().rounds
    env = env or os.environ.get("KEDRO_ENV")
    if runtime_params is None:
        runtime_params = exported_run_params()
    try:
        with _session_resolvers_kept():
            loader = settings.CONFIG_LOADER_CLASS(conf_source=str(conf_source), env=env,
                                                  runtime_params=runtime_params, **settings.CONFIG_LOADER_ARGS)
            return DistillationSettings.model_validate(loader["parameters"].get("distillation") or {}).rounds
    except Exception as error:  # noqa: BLE001 - a run reports bad settings with their sources (SettingsHook)
        default = DistillationSettings().rounds
        logger.warning("the distillation graph has the default %d round(s): the distillation parameters of %s "
                       "(env %s) do not validate: %s", default, conf_source, env or "local", error)
        return default


@contextlib.contextmanager
def _session_resolvers_kept() -> Iterator[None]:
    """Kedro's config loader registers its ``globals`` and ``runtime_params`` resolvers process-wide, bound
    to itself: a loader made while a session is open would otherwise resolve the session's catalog
    with this loader's environment. OmegaConf keeps resolvers in one class attribute; it is restored."""
    from omegaconf.basecontainer import BaseContainer

    saved = dict(BaseContainer._resolvers)
    try:
        yield
    finally:
        BaseContainer._resolvers = saved


def graph_rounds(graph: Pipeline) -> int | None:
    """How many trained rounds ``graph`` selects among (None when it holds no round selection)."""
    for each in graph.nodes:
        if each.name.rsplit(".", 1)[-1] == "select_best_round":
            return sum(name.endswith("validation_report") for name in each.inputs) - 1
    return None


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


def create_pipeline(rounds: int | None = None, **kwargs) -> Pipeline:
    """The graph with ``rounds`` trained rounds (by default ``configured_rounds()``)."""
    rounds = rounds or configured_rounds()
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
