"""Node of the package pipeline: what goes into the competition archive, checked against the limits."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

import fsku_kedro
from fsku_kedro.errors import UserInputError
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.knowledge.sparse import SparseIndex
from fsku_kedro.packaging.contents import CompetitionPackage, write_package
from fsku_kedro.packaging.limits import check_limits
from fsku_kedro.parameters.inference import InferenceSettings
from fsku_kedro.parameters.package import PackageSettings
from fsku_kedro.parameters.retrieval import RetrievalSettings

logger = logging.getLogger(__name__)


class CompetitionLimitError(UserInputError):
    """The packaged model or its measured speed misses a competition limit."""


def build_package(
    model_path: str | None,
    chunks: pd.DataFrame,
    bm25_index: SparseIndex,
    faiss_index: DenseIndex,
    embedder: Embedder,
    reranker: Any,
    prompt_templates: dict[str, Callable[[], str]],
    submission: pd.DataFrame,
    submission_rows: pd.DataFrame,
    input_versions: dict[str, str],
    inference: InferenceSettings,
    retrieval: RetrievalSettings,
    settings: PackageSettings,
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The package of the model inference answered with, its knowledge base, prompts, settings and
    submission, written into a staging folder that the catalog archives; the competition's limits are
    checked on the model and on the speed this run measured (a miss warns, or fails with
    ``on_limit_miss: fail``)."""
    if not model_path:
        raise FileNotFoundError("no model to package: run the compression and inference pipelines first")
    model_dir = Path(model_path)
    if submission_rows.empty:
        raise ValueError("no answers to package: run the inference pipeline first")
    seconds = float(submission_rows["inference_time"].mean())
    limits = settings.limits
    checks = check_limits(model_dir, inference.dtype, inference.batch_size, limits.tokens_per_sequence,
                          limits.gpu_memory_gb, seconds, limits.questions, limits.budget_minutes)
    missed = [check.describe() for check in checks if not check.met]
    for check in checks:
        (logger.info if check.met else logger.warning)("Competition limit: %s", check.describe())
    if missed and settings.on_limit_miss == "fail":
        raise CompetitionLimitError("the package misses the competition's limits:\n- " + "\n- ".join(missed))
    measurements = {
        "model": str(model_dir),
        "seconds_per_question": seconds,
        "questions_answered": len(submission_rows),
        "projected_minutes": seconds * limits.questions / 60,
        "limit_checks": [{"name": c.name, "measured": c.measured, "limit": c.limit, "unit": c.unit, "met": c.met,
                          "detail": c.detail} for c in checks],
    }
    package = CompetitionPackage(
        model_dir=model_dir, chunks=chunks, sparse_index=bm25_index, dense_index=faiss_index, embedder=embedder,
        reranker=reranker, prompts={name: load() for name, load in sorted(prompt_templates.items())},
        settings={"inference": inference.model_dump(mode="json"), "retrieval": retrieval.model_dump(mode="json")},
        submission=submission, project_root=Path(fsku_kedro.__file__).resolve().parents[2],
        measurements=measurements, input_versions=dict(input_versions),
    )
    staging = Path(tempfile.mkdtemp(prefix="fsku-package-"))
    write_package(package, staging)
    metrics = {"seconds_per_question": seconds, "projected_minutes": measurements["projected_minutes"],
               "gpu_memory_gib": checks[0].measured}
    return staging, measurements, {name: {"value": float(value), "step": 0} for name, value in metrics.items()}
