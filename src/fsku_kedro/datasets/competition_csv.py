"""Competition CSV files as Kedro datasets, read through ``fsku_kedro.competition_csv``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset
from kedro.io.core import DatasetError

from fsku_kedro.competition_csv import CompetitionFileError, read_competition_csv
from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer, validate_records
from fsku_kedro.questions import parse_test_table

logger = logging.getLogger(__name__)


class CompetitionCSVDataset(AbstractDataset[None, pd.DataFrame]):
    """A read-only CSV in the competition's layout, checked for ``columns`` on load.

    With ``optional: true`` a missing file loads as an empty table with those columns (and
    ``attrs["missing"] = True``), for inputs a run can do without (labels, the FSKU benchmark).
    """

    def __init__(
        self,
        filepath: str,
        columns: list[str] | None = None,
        optional: bool = False,
        metadata: dict | None = None,
    ):
        self._filepath = Path(filepath)
        self._columns = list(columns or [])
        self._optional = optional
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        if not self._filepath.exists():
            if not self._optional:
                raise DatasetError(f"{self._filepath}: no such file")
            logger.info("%s is absent; continuing without it", self._filepath)
            frame = pd.DataFrame(columns=self._columns, dtype=str)
            frame.attrs.update(source=str(self._filepath), missing=True)
            return frame
        try:
            return read_competition_csv(self._filepath, self._columns)
        except CompetitionFileError as error:
            raise DatasetError(str(error)) from error

    def save(self, data: Any) -> None:
        raise DatasetError("CompetitionCSVDataset is read-only")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "columns": self._columns, "optional": self._optional}


class QuestionsDataset(AbstractDataset[None, list]):
    """A competition ``test.csv`` (``ID``, ``Question``), checked and parsed into
    ``CompetitionQuestion`` records on load; the error lists every bad row."""

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._table = CompetitionCSVDataset(filepath, columns=["ID", "Question"])
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> list[CompetitionQuestion]:
        return parse_test_table(self._table.load(), str(self._filepath))

    def save(self, data: Any) -> None:
        raise DatasetError("QuestionsDataset is read-only")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class LabelsDataset(AbstractDataset[None, list]):
    """Answers for a question set (``ID``, ``question_type``, ``answer`` and optionally ``keywords``
    written ``a; b``, ``domain``, ``source``, ``evidence``), checked into ``LabelledAnswer`` records
    on load. With ``optional: true`` a missing file means no labels (an empty list)."""

    def __init__(self, filepath: str, optional: bool = False, metadata: dict | None = None):
        self._table = CompetitionCSVDataset(filepath, columns=["ID", "question_type", "answer"], optional=optional)
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> list[LabelledAnswer]:
        frame = self._table.load()
        rows = [{key: value for key, value in row.items() if value != ""} for row in frame.to_dict("records")]
        return validate_records(rows, LabelledAnswer, source=str(self._filepath), first_row_number=2)

    def save(self, data: Any) -> None:
        raise DatasetError("LabelsDataset is read-only")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
