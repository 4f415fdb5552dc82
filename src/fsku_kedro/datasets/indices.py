"""Versioned datasets for the BM25 and FAISS indices."""

from __future__ import annotations

from pathlib import Path

from fsku_kedro.datasets.directory import LocalDirectoryDataset
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.sparse import SparseIndex


class FaissIndexDataset(LocalDirectoryDataset):
    """A ``DenseIndex``: ``index.faiss`` plus its chunk-id mapping and build settings (JSON)."""

    def _write(self, directory: Path, data: DenseIndex) -> None:
        data.save(directory)

    def _read(self, directory: Path) -> DenseIndex:
        return DenseIndex.load(directory)


class BM25IndexDataset(LocalDirectoryDataset):
    """A ``SparseIndex``: bm25s arrays (saved without pickle) plus chunk ids and analyser."""

    def _write(self, directory: Path, data: SparseIndex) -> None:
        data.save(directory)

    def _read(self, directory: Path) -> SparseIndex:
        return SparseIndex.load(directory)
