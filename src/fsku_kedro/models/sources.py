"""Where model weights come from: local directories, packaged files and GGUF files.

A source is a string:
- ``pkg://<package>/<path>``: a file or folder shipped inside an installed Python package
  (the package is located without importing it);
- a local path to a model directory or to a ``.gguf`` file;
- a model id, which transformers resolves from its local cache (the project runs offline);

or a mapping ``{assemble: {...}}``: one file split over several installed distributions, joined in
order into ``into`` once, and used only when its SHA-256 matches the pinned one (see ``assemble``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fsku_kedro.hashing import file_sha256

logger = logging.getLogger(__name__)

PACKAGE_SCHEME = "pkg://"


class ModelSourceError(FileNotFoundError):
    """A model source that cannot be found; the message says how to provide it."""


def resolve_source(source: str | Mapping[str, Any]) -> str:
    """Turn a ``pkg://`` or an assembled source into a filesystem path; leave other sources unchanged."""
    if isinstance(source, Mapping):
        if set(source) != {"assemble"}:
            raise ModelSourceError(f"a model source mapping takes one key, assemble; got {sorted(source)}")
        return str(assemble(**source["assemble"]))
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


def distribution_file(distribution: str, relative: str) -> Path:
    """A file installed by ``distribution`` (as listed in its RECORD), located without importing it."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as error:
        raise ModelSourceError(
            f"{distribution} is not installed; run the project's set-up command (it installs the packaged models)"
        ) from error
    listed = {str(entry) for entry in dist.files or []}
    if relative not in listed:
        raise ModelSourceError(f"{distribution} {dist.version} installs no file {relative}")
    return Path(dist.locate_file(relative))


def assemble(distribution: str, file: str, parts: int, sha256: str, into: str) -> Path:
    """The file ``into``, joined from ``parts`` pieces: piece n is ``file`` (with ``{n}`` filled in)
    installed by ``distribution`` (likewise). Each piece is located through its distribution's
    RECORD, never imported. The joined file is written once (atomically) and used only when its
    SHA-256 is ``sha256`` (checked whenever it is used); a mismatch is refused with the digest found."""
    target = Path(into)
    if target.is_file() and file_sha256(target) == sha256:
        return target
    pieces = [distribution_file(distribution.format(n=n), file.format(n=n)) for n in range(1, parts + 1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)
    found = file_sha256(partial)
    if found != sha256:
        partial.unlink()
        raise ModelSourceError(
            f"the file joined from {parts} parts of {distribution.format(n='N')} has SHA-256 {found}, not the pinned "
            f"{sha256}; reinstall the parts with the hash-checked requirements file"
        )
    os.replace(partial, target)
    logger.info("Assembled %s from %d parts (SHA-256 verified)", target, parts)
    return target


def split_gguf(path: str) -> tuple[str, dict[str, Any]]:
    """Return (directory or id, extra from_pretrained kwargs) for a source path."""
    if path.endswith(".gguf"):
        file = Path(path)
        return str(file.parent), {"gguf_file": file.name}
    return path, {}


def load_tokenizer(source: str | Mapping[str, Any], trust_remote_code: bool = False) -> Any:
    """Load a tokenizer from any source form, with left padding for batched generation."""
    from transformers import AutoTokenizer

    location, extra = split_gguf(resolve_source(source))
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code, **extra)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(source: str | Mapping[str, Any], dtype: str = "auto", trust_remote_code: bool = False) -> Any:
    """Load a causal LM from any source form in ``dtype`` (``auto``: see ``compute_dtype``); GGUF weights
    are dequantised to it."""
    from transformers import AutoModelForCausalLM

    from fsku_kedro.models.compute_dtype import torch_dtype

    location, extra = split_gguf(resolve_source(source))
    logger.info("Loading causal LM from %s %s", location, extra or "")
    model = AutoModelForCausalLM.from_pretrained(
        location, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code, **extra
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


def missing_source(source: Any) -> str | None:
    """Why ``source`` cannot be loaded offline here (None when it can): a package, a part or a local
    path that is absent, or a model id with no copy in the Hugging Face cache. Nothing is loaded."""
    if isinstance(source, Mapping):
        spec = source.get("assemble", {})
        for n in range(1, int(spec.get("parts", 0)) + 1):
            try:
                distribution_file(spec["distribution"].format(n=n), spec["file"].format(n=n))
            except ModelSourceError as error:
                return str(error)
        return None
    if source.startswith(PACKAGE_SCHEME):
        try:
            resolve_source(source)
        except ModelSourceError as error:
            return str(error)
        return None
    path = Path(source)
    if path.exists() or source.startswith((".", "/")) or path.suffix == ".gguf":
        return None if path.exists() else f"{source} does not exist"
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, "config.json") or try_to_load_from_cache(source, "tokenizer_config.json")
    return None if isinstance(found, str) else f"{source} is not in the Hugging Face cache"
