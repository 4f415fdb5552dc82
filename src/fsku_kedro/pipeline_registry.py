"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline, pipeline

# Stages that want a GPU in production (generation, training, quantization, answering).
GPU_STAGES = ("response_generation", "distillation", "compression", "inference")
# Stages run on request only, after the others (not part of `kedro run` without --pipelines).
ON_REQUEST = ("package",)


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline under ``pipelines/``, each a namespace of its own name (one stage in kedro-viz and
    one task in a DAG made with ``kedro airflow create --group-by namespace``; dataset names are kept),
    and the sum of all but the on-request ones (``package``) as the default."""
    found = find_pipelines(raise_errors=True)
    pipelines = {
        name: pipeline(stage, namespace=name, prefix_datasets_with_namespace=False,
                       tags=["gpu"] if name in GPU_STAGES else ["cpu"])
        for name, stage in found.items()
    }
    pipelines["__default__"] = sum((stage for name, stage in pipelines.items() if name not in ON_REQUEST), Pipeline([]))
    return pipelines
