"""Project hooks: settings checked before the run, model locations and parameters in MLflow, the vLLM
engine shut down after each node."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset
from kedro.io.core import AbstractVersionedDataset
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from pydantic import BaseModel

from fsku_kedro.generation.vllm_engine import ENGINES
from fsku_kedro.log_setup import install_error_display, install_repeat_filter
from fsku_kedro.parameters import SettingsError, parameters_for_nodes, validate_parameters
from fsku_kedro.parameters.sources import ParameterSources
from fsku_kedro.run_timing import NODE_TIMES_FILE, NodeTimes

logger = logging.getLogger(__name__)

# MLflow tag prefixes naming the model versions a run wrote and read (python -m fsku_kedro.versions keeps them).
MODEL_LOCATION_TAG = "model_location."
INPUT_VERSION_TAG = "input_version."


class SettingsHook:
    """Checks the run's parameters against the settings models before any node runs and fills in every
    default; then, before the first node, that the distillation graph holds the run's number of rounds."""

    def __init__(self) -> None:
        self._sources: ParameterSources | None = None

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        install_error_display()
        install_repeat_filter()
        loader = context.config_loader
        runtime = dict(getattr(loader, "runtime_params", None) or {})
        sources = ParameterSources(loader, context.env or loader.default_run_env, runtime)
        self._sources = sources
        raw = loader["parameters"]
        validated = validate_parameters(raw, sources)
        _check_command_line_only(raw, runtime, sources)
        _check_model_dirs(validated["model_dirs"].model_dump())
        loader["parameters"] = parameters_for_nodes(validated, node_parameter_paths())

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from fsku_kedro.pipelines.distillation.pipeline import graph_rounds

        built = graph_rounds(pipeline)
        if built is None:
            return
        wanted = catalog.load("params:distillation").rounds
        if wanted != built:
            raise SettingsError(rounds_mismatch(wanted, built, self._sources, run_params.get("env")))


def rounds_mismatch(wanted: int, built: int, sources: ParameterSources | None, env: str | None) -> str:
    """Why a run's rounds differ from its graph's, and the way through."""
    where = ""
    if sources is not None:
        places = {place for key in ("schedule", "rounds", "loss") for place in sources.setting(("distillation", key))}
        where = f" (set in {', '.join(sorted(places))})" if places else ""
    built_from = os.environ.get("KEDRO_ENV") or "unset: conf/base and conf/local"
    return (f"distillation has {wanted} round(s){where} but the graph holds {built}: Kedro builds its pipelines "
            f"before it reads a session's env and runtime parameters (kedro-org/kedro#2627), so the graph follows "
            f"KEDRO_ENV (now {built_from}) and the parameters a kedro command exported. Run it as "
            f"`kedro run --env {env or '<env>'} --params ...`, which builds the graph of its own parameters, or set "
            "KEDRO_ENV before the pipelines are first read")


def node_parameter_paths() -> set[str]:
    """Every parameters path a registered node reads (``params:teacher.generation`` -> ``teacher.generation``)."""
    from kedro.framework.project import pipelines

    return {name.removeprefix("params:") for graph in pipelines.values() for each in graph.nodes
            for name in each.inputs if name.startswith("params:")}


# Blocks the catalog reads as runtime parameters, and what to do in a file instead.
COMMAND_LINE_ONLY = {
    "model_dirs": "point the catalog entry compressed_student@path or distilled_student@path at the directory",
}


def _check_command_line_only(raw: dict[str, Any], runtime: dict[str, Any], sources: ParameterSources) -> None:
    for block, instead in COMMAND_LINE_ONLY.items():
        in_files = {key for key, value in (raw.get(block) or {}).items()
                    if value is not None and key not in (runtime.get(block) or {})}
        if in_files:
            where = sources.where((block,))
            raise SettingsError(
                f"{block}.{min(in_files)} is set in {where}, but {block} only works with --params "
                f"(the catalog reads it as a runtime parameter); in a file, {instead} instead"
            )


def _check_model_dirs(model_dirs: dict[str, Any]) -> None:
    for stage, directory in model_dirs.items():
        if directory is not None and not (Path(directory) / "config.json").is_file():
            raise SettingsError(
                f"model_dirs.{stage}: {directory} is not a model directory (no config.json there)"
            )


def input_versions(pipeline: Any, catalog: Any) -> dict[str, str]:
    """The version each versioned input of ``pipeline`` will be read at ("none" when it has none yet)."""
    versions = {}
    for name in sorted(pipeline.inputs()):
        dataset = catalog.get(name) if not name.startswith("params:") and name != "input_versions" else None
        if isinstance(dataset, AbstractVersionedDataset):
            try:
                versions[name] = dataset.resolve_load_version() or "none"
            except Exception:  # noqa: BLE001 - a dataset with no version yet
                versions[name] = "none"
    return versions


class InputVersionsHook:
    """Offers the run's versioned-input versions to its nodes as the dataset ``input_versions``."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        catalog["input_versions"] = MemoryDataset(input_versions(pipeline, catalog), copy_mode="assign")


def _model_source_problem(dataset: Any) -> tuple[str, str] | None:
    """(why a model dataset cannot load offline, how to fetch it), or None when it can."""
    from fsku_kedro.datasets import E5EngineDataset
    from fsku_kedro.models.sources import ModelSourceError, distribution_file, missing_source

    if isinstance(dataset, E5EngineDataset):
        for spec in dataset._files.values():
            try:
                distribution_file(dataset._distribution, spec["file"])
            except ModelSourceError as error:
                return str(error), "bash scripts/setup_env.sh"
        return None
    source = getattr(dataset, "_source", None) if type(dataset).__name__ in _MODEL_DATASETS else None
    reason = missing_source(source) if source else None
    if reason is None:
        return None
    if isinstance(source, str) and "/" in source and not source.startswith(("pkg://", ".", "/")):
        return reason, f"hf download {source}"
    return reason, "the environment's set-up command (docs/environments.md)"


_MODEL_DATASETS = ("PretrainedModelDataset", "TokenizerDataset", "SentenceEmbedderDataset", "RerankerDataset")


class ModelPreflightHook:
    """Before the first node, checks that every model the run will load is available offline, and
    refuses the run with one message listing each missing model and the command that fetches it;
    then that an ``accelerate launch`` of the distillation can run (``launch_problems``)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        problems = []
        for name in sorted(pipeline.inputs()):
            if name.startswith("params:") or name == "input_versions":
                continue
            found = _model_source_problem(catalog.get(name))
            if found:
                problems.append(f"{name}: {found[0]}; fetch it once while online with: {found[1]}")
        if problems:
            raise SettingsError("models this run needs are not available offline:\n- " + "\n- ".join(problems))
        if "params:distillation" in pipeline.inputs():
            from fsku_kedro.distillation.launch import launch_problems

            problems = launch_problems(catalog.load("params:distillation"))
            if problems:
                raise SettingsError("accelerate launch cannot run these settings:\n- " + "\n- ".join(problems))


class ModelLocationHook:
    """Tags the MLflow run with where each saved model directory and adapter version lives,
    so a run in the MLflow UI points at the weights it produced."""

    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if self._catalog is None:
            return
        from fsku_kedro.datasets import LoraAdapterDataset, ModelDirectoryDataset, QuantizedModelDataset

        dataset = self._catalog.get(dataset_name)
        path = getattr(dataset, "last_saved_path", None)
        if not isinstance(dataset, (ModelDirectoryDataset, LoraAdapterDataset, QuantizedModelDataset)) or path is None:
            return
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.set_tag(f"{MODEL_LOCATION_TAG}{dataset_name.split('@')[0]}", str(path))


class RunTimingHook:
    """Logs the compute dtype ``auto`` stands for, then times every node (from loading its first input
    to saving its last output); at the end of the run, failed or not, logs the per-node table, writes it
    to ``logs/node_times.json`` and, while an MLflow run is open, logs each node's seconds
    (``node_seconds.<node>``). The table so far is written after every node too, so a killed run
    leaves the times of the nodes it finished (``finished: false``)."""

    def __init__(self) -> None:
        self._times: NodeTimes | None = None
        self._project = Path.cwd()

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from fsku_kedro.models.compute_dtype import log_choice

        log_choice()
        self._times = NodeTimes()

    def _mark(self, node: Any) -> None:
        if self._times is not None and node is not None:
            self._times.mark(node.name)

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str, node: Any) -> None:
        self._mark(node)

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._mark(node)

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        self._mark(node)
        if self._times is None:
            return
        self._times.write(self._project / NODE_TIMES_FILE)
        import mlflow

        if mlflow.active_run() is not None:
            start, end = self._times.spans[node.name]
            mlflow.log_metric(f"node_seconds.{node.name}", round(end - start, 3))

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        self._mark(node)

    @hook_impl
    def on_node_error(self, error: Exception, node: Any) -> None:
        self._mark(node)
        if self._times is not None:
            self._times.failed.add(node.name)

    def _report(self) -> None:
        if self._times is None:
            return
        self._times.finish()
        self._times.report(self._project / NODE_TIMES_FILE)
        self._times = None

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._report()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._report()


# A model-training experiment. MLflow 3 UIs before the GenAI / Model training switch open such an
# experiment on its runs table; from 3.17 the switch (remembered per browser, default GenAI) decides,
# so the link below carries workflowType=machine_learning.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


class EngineReleaseHook:
    """Shuts the vLLM engine down when the node that started it ends, so that it holds no memory or
    core while later nodes train or quantize (the next node that needs it starts its own)."""

    @hook_impl
    def after_node_run(self) -> None:
        ENGINES.release()

    @hook_impl
    def on_node_error(self) -> None:
        ENGINES.release()


def runs_table_url(experiment_id: str, server: str = "http://127.0.0.1:5000") -> str:
    """The `mlflow ui` page listing the experiment's runs (the Model training view)."""
    return f"{server}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def run_name(pipeline_names: list[str], losses: list[str] | None, student: str | None) -> str:
    """What a run is: its pipelines, and for distillation the loss schedule and the student."""
    parts = ["+".join(pipeline_names or ["all pipelines"])]
    if losses is not None:
        parts += ["→".join(losses), student or "student"]
    return " | ".join(parts)


def anchored_tracking_uri(uri: Any, project_path: str | Path) -> Any:
    """A relative ``sqlite:///file`` tracking URI made absolute under the project root, so every
    working directory (a notebook runs in notebooks/) reads the same store; other URIs unchanged."""
    prefix = "sqlite:///"
    if isinstance(uri, str) and uri.startswith(prefix) and not Path(uri[len(prefix):]).is_absolute():
        return prefix + (Path(project_path) / uri[len(prefix):]).as_posix()
    return uri


class ProjectMlflowHook(MlflowHook):
    """kedro-mlflow's hook, naming each run by what it is (pipelines, loss schedule, student), tagging
    it with the loss types and the versions of the versioned datasets it reads, and giving each typed
    settings input as the nested dict it flattens into MLflow parameters
    (``knowledge_base.chunking.max_tokens`` ...)."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        loader = context.config_loader
        loader.config_patterns.setdefault("mlflow", ["mlflow*", "mlflow*/**", "**/mlflow*"])
        settings = loader["mlflow"]
        server = settings.setdefault("server", {})
        server["mlflow_tracking_uri"] = anchored_tracking_uri(server.get("mlflow_tracking_uri"), context.project_path)
        loader["mlflow"] = settings
        super().after_context_created(context=context)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        names = [name for name in (run_params.get("pipeline_names") or []) if name != "__default__"]
        trains = not names or "distillation" in names
        settings = catalog.load("params:distillation") if trains and catalog.exists("params:distillation") else None
        losses = list(getattr(settings, "losses", [])) if settings is not None else None
        student = self._student(catalog) if trains else None
        if getattr(self, "mlflow_config", None) is not None:
            self.mlflow_config.tracking.run.name = run_name(names, losses, student)
        super().before_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)
        import mlflow

        run = mlflow.active_run()
        if run is None:
            return
        mlflow.MlflowClient().set_experiment_tag(run.info.experiment_id, *EXPERIMENT_KIND)
        logger.info("MLflow run %s; compare runs with `mlflow ui --backend-store-uri %s`, then %s",
                    run.info.run_id, mlflow.get_tracking_uri(), runs_table_url(run.info.experiment_id))
        tags = {"pipelines": ",".join(names or ["__default__"])}
        if losses is not None:
            tags |= {"losses": ",".join(losses), "student": student or "",
                     **{f"round_{n}.loss": loss for n, loss in enumerate(losses, start=1)}}
        # MLflow keys take no "@": a transcoded name is written with ":" (compressed_student:path).
        tags |= {f"{INPUT_VERSION_TAG}{name.replace('@', ':')}": version
                 for name, version in input_versions(pipeline, catalog).items()}
        mlflow.set_tags(tags)

    @staticmethod
    def _student(catalog: Any) -> str | None:
        """The name the run's derived student will have."""
        from fsku_kedro.models.derivation import student_name

        source = getattr(catalog.get("student_source"), "model_name", None)
        if source is None or "params:student_shape" not in catalog:
            return None
        shape = catalog.load("params:student_shape")
        return student_name(source, shape.layers, shape.layer_selection, shape.mlp_channels,
                            shape.mlp_compensation_damping is not None)

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any], is_async: bool) -> None:
        plain = {name: value.model_dump(mode="json") if isinstance(value, BaseModel) else value
                 for name, value in inputs.items()}
        super().before_node_run(node=node, catalog=catalog, inputs=plain, is_async=is_async)
