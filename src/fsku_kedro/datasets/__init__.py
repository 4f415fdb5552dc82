"""Custom Kedro datasets for the project's heavy artefacts."""

from fsku_kedro.datasets.binary_file import BinaryFileDataset
from fsku_kedro.datasets.content_cache import ContentCacheDataset
from fsku_kedro.datasets.indices import BM25IndexDataset, FaissIndexDataset
from fsku_kedro.datasets.models import (
    ModelDirectoryDataset,
    PretrainedModelDataset,
    RerankerDataset,
    SentenceEmbedderDataset,
    TokenizerDataset,
)

__all__ = [
    "BM25IndexDataset",
    "BinaryFileDataset",
    "ContentCacheDataset",
    "FaissIndexDataset",
    "ModelDirectoryDataset",
    "PretrainedModelDataset",
    "RerankerDataset",
    "SentenceEmbedderDataset",
    "TokenizerDataset",
]
