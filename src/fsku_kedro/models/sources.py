"""Where model weights come from: local directories, packaged files and GGUF files.

A source is a string:
- ``pkg://<package>/<path>``: a file or folder shipped inside an installed Python package
  (the package is located without importing it);
- a local path to a model directory or to a ``.gguf`` file;
- a model id, which transformers resolves from its local cache (the project runs offline).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PACKAGE_SCHEME = "pkg://"


class ModelSourceError(FileNotFoundError):
    """A model source that cannot be found; the message says how to provide it."""


def resolve_source(source: str) -> str:
    """Turn a ``pkg://`` source into a filesystem path; leave other sources unchanged."""
    if not source.startswith(PACKAGE_SCHEME):
        return source
    package, _, inner = source[len(PACKAGE_SCHEME) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"model source {source!r}: Python package {package!r} is not installed; "
            "run the project's set-up command (it installs the packaged default models)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.exists():
        raise ModelSourceError(f"model source {source!r}: {path} does not exist in package {package!r}")
    return str(path)


def split_gguf(path: str) -> tuple[str, dict[str, Any]]:
    """Return (directory or id, extra from_pretrained kwargs) for a source path."""
    if path.endswith(".gguf"):
        file = Path(path)
        return str(file.parent), {"gguf_file": file.name}
    return path, {}


def load_tokenizer(source: str, trust_remote_code: bool = False) -> Any:
    """Load a tokenizer from any source form, with left padding for batched generation."""
    from transformers import AutoTokenizer

    location, extra = split_gguf(resolve_source(source))
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code, **extra)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(source: str, dtype: str = "float32", trust_remote_code: bool = False) -> Any:
    """Load a causal LM from any source form; GGUF weights are dequantised to ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM

    location, extra = split_gguf(resolve_source(source))
    logger.info("Loading causal LM from %s %s", location, extra or "")
    model = AutoModelForCausalLM.from_pretrained(
        location, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, **extra
    )
    if "gguf_file" in extra:
        _forget_gguf_origin(model)
    model.eval()
    return model


def _forget_gguf_origin(model: Any) -> None:
    """A GGUF model is dequantised on load, yet transformers still marks it as quantised and
    refuses to save it; clear the marks so it saves as an ordinary safetensors model."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
