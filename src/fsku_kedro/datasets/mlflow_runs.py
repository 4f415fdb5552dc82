"""The runs of an MLflow experiment as a table, read through MLflow's own search API."""

from __future__ import annotations

from typing import Any

import pandas as pd
from kedro.io import AbstractDataset
from kedro.io.core import DatasetError


class MlflowRunsDataset(AbstractDataset[None, pd.DataFrame]):
    """``mlflow.search_runs`` over ``experiment`` (the tracking store kedro-mlflow configured for the
    run): one row per run with its ``params.*``, ``metrics.*`` (latest values) and ``tags.*``.
    Read-only; an experiment without runs loads as an empty table."""

    def __init__(self, experiment: str, filter_string: str = "", metadata: dict | None = None):
        self._experiment = experiment
        self._filter = filter_string
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        import mlflow

        if mlflow.get_experiment_by_name(self._experiment) is None:
            return pd.DataFrame()
        return mlflow.search_runs(experiment_names=[self._experiment], filter_string=self._filter,
                                  output_format="pandas")

    def save(self, data: Any) -> None:
        raise DatasetError("MlflowRunsDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"experiment": self._experiment, "filter_string": self._filter}
