"""Competition CSV files (test.csv, answer keys, the FSKU benchmark) in whatever encoding they come.

UTF-8 with or without a byte-order mark, and cp949 / euc-kr (cp949 is a superset of euc-kr) are
recognised; line endings inside and between cells become ``\\n``. Every cell is read as text.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset
from kedro.io.core import DatasetError

from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer, validate_records
from fsku_kedro.questions import parse_test_table
from fsku_kedro.text_decoding import decode_korean_text

logger = logging.getLogger(__name__)


def decode_text(raw: bytes, source: str) -> tuple[str, str]:
    """(text, encoding) of ``raw``: UTF-8 (a byte-order mark is dropped), else cp949 / euc-kr."""
    try:
        text, encoding = decode_korean_text(raw)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DatasetError(
            f"{source}: line {line}: bytes that are neither UTF-8 nor cp949/euc-kr; save the file as UTF-8"
        ) from error
    return text, "utf-8" if encoding == "utf-8-sig" else encoding


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
        text, encoding = decode_text(self._filepath.read_bytes(), str(self._filepath))
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise DatasetError(f"{self._filepath}: not a readable CSV ({error})") from error
        frame.columns = [str(column).strip() for column in frame.columns]
        absent = [column for column in self._columns if column not in frame.columns]
        if absent:
            raise DatasetError(f"{self._filepath}: missing column(s) {absent}; found {list(frame.columns)}")
        frame.attrs.update(source=str(self._filepath), encoding=encoding, missing=False)
        return frame

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
