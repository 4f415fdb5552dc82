"""Custom Kedro datasets for the project's heavy artefacts."""

from fsku_kedro.datasets.arrow import AtomicArrowDataset
from fsku_kedro.datasets.binary_file import BinaryFileDataset
from fsku_kedro.datasets.competition_csv import CompetitionCSVDataset, LabelsDataset, QuestionsDataset
from fsku_kedro.datasets.content_cache import ContentCacheDataset
from fsku_kedro.datasets.directory_archive import DirectoryArchiveDataset
from fsku_kedro.datasets.indices import BM25IndexDataset, FaissIndexDataset
from fsku_kedro.datasets.mlflow_runs import MlflowRunsDataset
from fsku_kedro.datasets.models import (
    E5EngineDataset,
    LoraAdapterDataset,
    ModelDirectoryDataset,
    ModelPathDataset,
    PretrainedModelDataset,
    QuantizedModelDataset,
    QuantizedModelsDataset,
    RerankerDataset,
    SentenceEmbedderDataset,
    TokenizerDataset,
)
from fsku_kedro.datasets.response_store import ResponseStoreDataset
from fsku_kedro.datasets.user_instructions import UserInstructionsDataset

__all__ = [
    "AtomicArrowDataset",
    "BM25IndexDataset",
    "BinaryFileDataset",
    "CompetitionCSVDataset",
    "E5EngineDataset",
    "ContentCacheDataset",
    "DirectoryArchiveDataset",
    "FaissIndexDataset",
    "LabelsDataset",
    "LoraAdapterDataset",
    "MlflowRunsDataset",
    "ModelDirectoryDataset",
    "ModelPathDataset",
    "PretrainedModelDataset",
    "QuantizedModelDataset",
    "QuantizedModelsDataset",
    "QuestionsDataset",
    "RerankerDataset",
    "ResponseStoreDataset",
    "SentenceEmbedderDataset",
    "TokenizerDataset",
    "UserInstructionsDataset",
]
