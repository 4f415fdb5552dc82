"""Nodes of the compression pipeline: calibration text, quantized variants, the served model, the report."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from fsku_kedro.compression.methods import check_configuration, quantize
from fsku_kedro.datasets.models import load_bundle
from fsku_kedro.distillation.validation import fsku_validation
from fsku_kedro.evaluation.held_out import held_out_questions
from fsku_kedro.generation.backends import GenerationParams, make_backend
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.plotting import use_korean_font
from fsku_kedro.prompt_templates import read_templates
from fsku_kedro.splits import unit_hash

logger = logging.getLogger(__name__)


def build_calibration_set(chunks: pd.DataFrame, prompt_set: pd.DataFrame, parameters: dict[str, Any]) -> dict:
    """Calibration text (knowledge-base chunks and training prompts) and held-out chunks for
    perplexity; a seeded hash of each chunk decides its side, so the two never overlap."""
    seed = parameters["seed"]
    held_share = parameters["held_out_share"]
    texts = [t for t in chunks["content"].astype(str) if t.strip()]
    held_out = [t for t in texts if unit_hash(seed, "held_out", t) < held_share]
    rest = [t for t in texts if unit_hash(seed, "held_out", t) >= held_share]
    rest.sort(key=lambda t: unit_hash(seed, "calibration", t))
    prompts = sorted(prompt_set.loc[prompt_set["split"] == "train", "prompt"].astype(str),
                     key=lambda t: unit_hash(seed, "calibration", t))
    n = parameters["calibration_samples"]
    n_prompts = min(len(prompts), int(round(n * parameters["prompt_share"])))
    calibration = rest[: n - n_prompts] + prompts[:n_prompts]
    if not calibration:
        raise ValueError("no calibration text: the knowledge base has no chunks and the prompt set no train prompts")
    held_out = held_out[: parameters["held_out_chunks"]]
    logger.info("Calibration: %d texts (%d prompts); %d held-out chunks", len(calibration), n_prompts, len(held_out))
    return {"calibration": calibration, "held_out": held_out}


def quantize_student(distilled_student: ModelBundle, calibration_set: dict, parameters: dict[str, Any]) -> dict:
    """Every method of ``parameters["methods"]`` applied to the student's directory (or to
    ``parameters["source_dir"]`` when set). Settings are checked before any work starts."""
    source = parameters.get("source_dir") or distilled_student.path
    if not source or not Path(source).is_dir():
        raise ValueError(f"compression needs the student as a model directory; got {source!r}")
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, trust_remote_code=parameters.get("trust_remote_code", False))
    methods = list(parameters["methods"])
    check_configuration(methods, parameters, config, torch.cuda.is_available())
    variants = {}
    for method in methods:
        start = time.perf_counter()
        work = tempfile.mkdtemp(prefix=f"fsku_{method}_")
        model = quantize(method, source, distilled_student.tokenizer, calibration_set["calibration"], parameters,
                         Path(work))
        # A GPTQ model is saved from the checkpoint in ``work``: keep it as long as the model lives.
        weakref.finalize(model, shutil.rmtree, work, True)
        logger.info("%s: quantized in %.1f s", method, time.perf_counter() - start)
        variants[method] = ModelBundle(model, distilled_student.tokenizer, f"{distilled_student.name}-{method}")
    return variants


def select_served_student(quantized_students: dict, parameters: dict[str, Any]) -> ModelBundle:
    """The variant the inference pipeline reads by default (``serve_method``)."""
    method = parameters["serve_method"]
    if method not in quantized_students:
        raise ValueError(f"compression.serve_method {method!r} is not among the methods run: {sorted(quantized_students)}")
    return quantized_students[method]


def _directory_bytes(path: str | None) -> float:
    if not path:
        return float("nan")
    return float(sum(p.stat().st_size for p in Path(path).glob("*.safetensors")))


def _peak_load_mib(path: str | None) -> float:
    if not path:
        return float("nan")
    result = subprocess.run([sys.executable, "-m", "fsku_kedro.compression.probe", path],
                            capture_output=True, text=True, timeout=1800)
    if result.returncode:
        logger.warning("load probe failed for %s: %s", path, result.stderr[-500:])
        return float("nan")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["peak_load_mib"])


def perplexity(bundle: ModelBundle, texts: list[str], max_tokens: int) -> float:
    """exp(mean next-token NLL) over the tokens of ``texts`` (each cut to ``max_tokens``)."""
    nll, count = 0.0, 0
    device = next(bundle.model.parameters()).device
    for text in texts:
        ids = bundle.tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)["input_ids"]
        if ids.shape[1] < 2:
            continue
        with torch.no_grad():
            loss = bundle.model(input_ids=ids.to(device), labels=ids.to(device)).loss
        nll += float(loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    return math.exp(nll / count) if count else float("nan")


def _tokens_per_second(bundle: ModelBundle, texts: list[str], parameters: dict[str, Any]) -> float:
    generation = dict(parameters["generation"])
    backend = make_backend(bundle, generation, show_progress=False)
    chats = [[{"role": "user", "content": t[:400]}] for t in texts]
    start = time.perf_counter()
    completions = backend.generate(chats, GenerationParams.from_parameters(generation))
    return sum(c.completion_tokens for c in completions) / (time.perf_counter() - start)


def compression_report(
    distilled_student: ModelBundle,
    quantized_students: dict,
    calibration_set: dict,
    sample_questions: pd.DataFrame,
    sample_labels: pd.DataFrame,
    prompt_templates: dict[str, Callable[[], str]],
    embedder: Embedder,
    parameters: dict[str, Any],
    prompt_set_parameters: dict[str, Any],
) -> tuple[pd.DataFrame, dict, plt.Figure]:
    """Size on disk, peak memory at load, generation tokens/s, held-out perplexity and the FSKU
    validation score of the unquantized student and of every variant."""
    report_params = parameters["report"]
    questions, labels = held_out_questions(sample_questions, sample_labels, prompt_set_parameters)
    templates = read_templates(prompt_templates)
    held_out = calibration_set["held_out"]
    speed_texts = held_out[: report_params["speed_prompts"]] or calibration_set["calibration"][:4]
    baseline = distilled_student
    if parameters.get("source_dir"):  # the variants were made from this directory: compare with it
        baseline = load_bundle(Path(parameters["source_dir"]), "float32", parameters.get("trust_remote_code", False))
    rows = []
    for method, bundle in [("none", baseline), *quantized_students.items()]:
        scores, _ = fsku_validation(bundle, questions, labels, templates, embedder, report_params)
        rows.append({
            "method": method,
            "model": bundle.name,
            "size_mb": _directory_bytes(bundle.path) / 1e6,
            "peak_load_mib": _peak_load_mib(bundle.path),
            "tokens_per_s": _tokens_per_second(bundle, speed_texts, report_params),
            "perplexity": perplexity(bundle, held_out, report_params["max_tokens"]),
            "fsku_score": scores["fsku_score"],
            "mc_accuracy": scores.get("mc_accuracy", float("nan")),
        })
        logger.info("compression report: %s", rows[-1])
    report = pd.DataFrame(rows)
    base = report.iloc[0]
    report["size_ratio"] = report["size_mb"] / base["size_mb"]
    report["perplexity_change"] = report["perplexity"] / base["perplexity"] - 1
    metrics = {
        f"{row.method}.{column}": {"value": float(getattr(row, column)), "step": 0}
        for row in report.itertuples(index=False)
        for column in ("size_mb", "peak_load_mib", "tokens_per_s", "perplexity", "fsku_score", "size_ratio")
        if np.isfinite(getattr(row, column))
    }
    return report, metrics, _tradeoff_plot(report)


def _tradeoff_plot(report: pd.DataFrame) -> plt.Figure:
    use_korean_font()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, column, label in ((axes[0], "perplexity", "held-out perplexity"), (axes[1], "tokens_per_s", "tokens/s")):
        ax.scatter(report["size_mb"], report[column])
        for row in report.itertuples(index=False):
            ax.annotate(row.method, (row.size_mb, getattr(row, column)), textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel("safetensors size (MB)")
        ax.set_ylabel(label)
    figure.suptitle("quantization trade-off")
    figure.tight_layout()
    return figure
