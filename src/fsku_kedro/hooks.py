"""Project hooks."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl


class ModelLocationHook:
    """Tags the MLflow run with where each saved model directory and adapter version lives,
    so a run in the MLflow UI points at the weights it produced."""

    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if self._catalog is None:
            return
        from fsku_kedro.datasets import LoraAdapterDataset, ModelDirectoryDataset, QuantizedModelDataset

        dataset = self._catalog.get(dataset_name)
        path = getattr(dataset, "last_saved_path", None)
        if not isinstance(dataset, (ModelDirectoryDataset, LoraAdapterDataset, QuantizedModelDataset)) or path is None:
            return
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.set_tag(f"model_location.{dataset_name.split('@')[0]}", str(path))
