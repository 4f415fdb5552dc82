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

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from fsku_kedro.compression.calibration import calibration_texts, multiple_choice_prompts
from fsku_kedro.compression.methods import check_configuration, quantize
from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer
from fsku_kedro.evaluation.closed_book import fsku_validation
from fsku_kedro.evaluation.held_out import held_out_questions
from fsku_kedro.generation.backends import make_backend
from fsku_kedro.hashing import unit_hash
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.loading import load_any_model, load_bundle, stored_name
from fsku_kedro.models.sources import load_tokenizer
from fsku_kedro.parameters.compression import CompressionReportSettings, CompressionSettings
from fsku_kedro.parameters.inference import InferenceSettings
from fsku_kedro.plotting import use_korean_font
from fsku_kedro.prompt_templates import read_templates

logger = logging.getLogger(__name__)


def build_calibration_set(chunks: pd.DataFrame, prompt_set: pd.DataFrame,
                          prompt_templates: dict[str, Callable[[], str]], compression: CompressionSettings) -> dict:
    """Calibration text and held-out chunks for perplexity; a seeded hash of each chunk decides its
    side, so the two never overlap. Calibration holds chunks (``calibration``) and user prompts
    (``prompts``: training prompts and multiple-choice prompts made from the calibration chunks, which
    the quantizer puts in the model's chat template)."""
    settings = compression.calibration
    seed = settings.seed
    usable = chunks[chunks["content"].astype(str).str.strip() != ""]
    side = usable["content"].astype(str).map(lambda t: unit_hash(seed, "held_out", t) < settings.held_out_share)
    held_out, rest = list(usable.loc[side, "content"].astype(str)), usable.loc[~side]
    texts = sorted(rest["content"].astype(str), key=lambda t: unit_hash(seed, "calibration", t))
    prompts = sorted(prompt_set.loc[prompt_set["split"] == "train", "prompt"].astype(str),
                     key=lambda t: unit_hash(seed, "calibration", t))
    n = settings.calibration_samples
    n_prompts = min(len(prompts), round(n * settings.prompt_share))
    n_mc = round(n * settings.mc_prompt_share) if len(rest) else 0
    mc = multiple_choice_prompts(rest, n_mc, seed, read_templates(prompt_templates)) if n_mc else []
    calibration = texts[: n - n_prompts - n_mc]
    if not calibration and not prompts[:n_prompts] and not mc:
        raise ValueError("no calibration text: the knowledge base has no chunks and the prompt set no train prompts")
    held_out = held_out[: settings.held_out_chunks]
    logger.info("Calibration: %d chunks, %d training prompts, %d multiple-choice prompts; %d held-out chunks",
                len(calibration), n_prompts, len(mc), len(held_out))
    return {"calibration": calibration, "prompts": prompts[:n_prompts] + mc, "held_out": held_out}


def _source_directory(model_path: str | None) -> Path:
    if not model_path or not Path(model_path).is_dir():
        raise FileNotFoundError(
            "no model to quantize: run `kedro run --pipelines distillation` first, or name a model directory with "
            "`--params model_dirs.compression=/path/to/model`"
        )
    return Path(model_path)


def quantize_student(model_path: str | None, calibration_set: dict, settings: CompressionSettings) -> dict:
    """Every method of ``settings.methods`` applied to the model directory at ``model_path`` (the
    distilled student unless ``model_dirs.compression`` names another). Settings are checked
    against the model before any work starts."""
    from transformers import AutoConfig

    source = _source_directory(model_path)
    config = AutoConfig.from_pretrained(source, trust_remote_code=settings.trust_remote_code)
    check_configuration(settings, config, torch.cuda.is_available())
    tokenizer = load_tokenizer(str(source), trust_remote_code=settings.trust_remote_code)
    name = stored_name(source)
    variants = {}
    for method in settings.methods:
        start = time.perf_counter()
        work = tempfile.mkdtemp(prefix=f"fsku_{method}_")
        model = quantize(method, str(source), tokenizer, calibration_texts(calibration_set, tokenizer), settings,
                         Path(work))
        # A GPTQ model is saved from the checkpoint in ``work``: keep it as long as the model lives.
        weakref.finalize(model, shutil.rmtree, work, True)
        logger.info("%s: quantized in %.1f s", method, time.perf_counter() - start)
        variants[method] = ModelBundle(model, tokenizer, f"{name}-{method}")
    return variants


def select_served_student(quantized_students: dict, model_path: str | None,
                          settings: CompressionSettings) -> ModelBundle:
    """The variant the inference pipeline reads by default (``serve_method``): a quantized one, or with
    ``none`` the model at ``model_path`` itself in the compute dtype (where 4 bits do not pay)."""
    if settings.serve_method == "none":
        source = _source_directory(model_path)
        logger.info("Serving %s unquantized (compression.serve_method: none)", source)
        return load_bundle(source, settings.dtype, settings.trust_remote_code)
    return quantized_students[settings.serve_method]


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


def _tokens_per_second(bundle: ModelBundle, texts: list[str], settings: CompressionReportSettings) -> float:
    backend = make_backend(bundle, settings.generation, show_progress=False)
    chats = [[{"role": "user", "content": t[:400]}] for t in texts]
    start = time.perf_counter()
    completions = backend.generate(chats, settings.generation.sampling())
    return sum(c.completion_tokens for c in completions) / (time.perf_counter() - start)


def compression_report(
    model_path: str | None,
    quantized_students: dict,
    calibration_set: dict,
    sample_questions: list[CompetitionQuestion],
    sample_labels: list[LabelledAnswer],
    sample_split: pd.DataFrame,
    prompt_templates: dict[str, Callable[[], str]],
    embedder: Embedder,
    settings: CompressionSettings,
    inference: InferenceSettings,
) -> tuple[pd.DataFrame, dict, plt.Figure]:
    """Size on disk and held-out perplexity of the unquantized model and of every variant; with
    ``report.level: full`` also peak memory at load (in a fresh process), generation tokens/s and the
    FSKU validation score (NaN at level ``sizes``)."""
    report_settings = settings.report
    questions, labels = held_out_questions(sample_questions, sample_labels, sample_split)
    templates = read_templates(prompt_templates)
    held_out = calibration_set["held_out"]
    speed_texts = held_out[: report_settings.speed_prompts] or calibration_set["calibration"][:4]
    baseline = load_any_model(_source_directory(model_path), settings.dtype, settings.trust_remote_code)
    rows = []
    full = report_settings.level == "full"
    nan = float("nan")
    for method, bundle in [("none", baseline), *quantized_students.items()]:
        scores = {}
        if full:
            scores, _ = fsku_validation(bundle, questions, labels, templates, embedder, inference)
        rows.append({
            "method": method,
            "model": bundle.name,
            "size_mb": _directory_bytes(bundle.path) / 1e6,
            "peak_load_mib": _peak_load_mib(bundle.path) if full else nan,
            "tokens_per_s": _tokens_per_second(bundle, speed_texts, report_settings) if full else nan,
            "perplexity": perplexity(bundle, held_out, report_settings.max_tokens),
            "fsku_score": scores.get("fsku_score", nan),
            "mc_accuracy": scores.get("mc_accuracy", nan),
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
