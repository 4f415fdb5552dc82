"""Optional instruction data a user adds to the prompt set: CSV or JSONL, any common encoding.

Rows with no prompt text, malformed JSON lines and undecodable bytes are skipped and counted
(``DataFrame.attrs["skipped"]`` lists file, line and reason); an error names the file only when
nothing usable remains. A missing file means no user data.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset
from kedro.io.core import DatasetError

from fsku_kedro.text_decoding import decode_korean_text

logger = logging.getLogger(__name__)

PROMPT_FIELDS = ("prompt", "instruction", "question")
REFERENCE_FIELDS = ("reference", "output", "answer", "response")


def _first(record: dict[str, Any], names: tuple[str, ...]) -> str:
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


class UserInstructionsDataset(AbstractDataset[None, pd.DataFrame]):
    def __init__(self, filepath: str | None = None, metadata: dict | None = None):
        self._filepath = Path(filepath) if filepath else None
        self.metadata = metadata

    def _lines(self) -> list[tuple[int, str | None]]:
        raw = self._filepath.read_bytes()
        try:
            return list(enumerate(decode_korean_text(raw)[0].splitlines(), start=1))
        except UnicodeDecodeError:
            pass
        # Mixed encodings: decode line by line, skipping what cannot be decoded.
        decoded = []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            try:
                decoded.append((number, line.decode("utf-8")))
            except UnicodeDecodeError:
                decoded.append((number, None))
        return decoded

    def load(self) -> pd.DataFrame:
        frame = pd.DataFrame(columns=["prompt", "reference", "line"])
        frame.attrs["skipped"] = []
        if self._filepath is None or not self._filepath.exists():
            return frame
        lines = self._lines()
        skipped = [f"{self._filepath}: line {n}: not decodable" for n, line in lines if line is None]
        lines = [(n, line) for n, line in lines if line is not None]
        records: list[tuple[int, dict[str, Any]]] = []
        if self._filepath.suffix.lower() == ".csv":
            text = "\n".join(line for _, line in lines)
            for offset, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
                records.append((offset, row))
        else:
            for number, line in lines:
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    skipped.append(f"{self._filepath}: line {number}: malformed JSON ({error.msg})")
                    continue
                if isinstance(value, dict):
                    records.append((number, value))
                else:
                    skipped.append(f"{self._filepath}: line {number}: not a JSON object")
        rows = []
        for number, record in records:
            prompt = _first(record, PROMPT_FIELDS)
            if not prompt:
                skipped.append(f"{self._filepath}: line {number}: no prompt text ({'/'.join(PROMPT_FIELDS)})")
                continue
            rows.append({"prompt": prompt, "reference": _first(record, REFERENCE_FIELDS), "line": number})
        for problem in skipped:
            logger.warning("Skipped user instruction: %s", problem)
        if not rows and skipped:
            shown = "\n".join(skipped[:10])
            raise DatasetError(f"no usable instruction in {self._filepath}; {len(skipped)} problem(s):\n{shown}")
        frame = pd.DataFrame(rows, columns=["prompt", "reference", "line"])
        frame.attrs["skipped"] = skipped
        return frame

    def save(self, data: Any) -> None:
        raise DatasetError("UserInstructionsDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
