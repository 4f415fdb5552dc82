"""Reading competition CSV files (test.csv, answer keys, the FSKU benchmark) in whatever encoding
they come: UTF-8 with or without a byte-order mark, or cp949 / euc-kr (cp949 is a superset of
euc-kr). Line endings inside and between cells become ``\\n``; every cell is read as text.
The Kedro datasets (datasets/competition_csv.py) and the package's offline answering both read
through here."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion
from fsku_kedro.errors import UserInputError
from fsku_kedro.questions import parse_test_table
from fsku_kedro.text_decoding import decode_korean_text


class CompetitionFileError(UserInputError):
    """A competition CSV that cannot be read; the message names the file (and the line, where known)."""


def decode_text(raw: bytes, source: str) -> tuple[str, str]:
    """(text, encoding) of ``raw``: UTF-8 (a byte-order mark is dropped), else cp949 (which reads euc-kr)."""
    try:
        text, encoding = decode_korean_text(raw)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise CompetitionFileError(
            f"{source}: line {line}: bytes that are neither UTF-8 nor cp949/euc-kr; save the file as UTF-8"
        ) from error
    return text, "utf-8" if encoding == "utf-8-sig" else encoding


def read_competition_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """The table at ``path`` with every cell as text, checked for ``columns``; ``attrs`` hold its source
    and encoding."""
    if not path.exists():
        raise CompetitionFileError(f"{path}: no such file")
    text, encoding = decode_text(path.read_bytes(), str(path))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise CompetitionFileError(f"{path}: not a readable CSV ({error})") from error
    frame.columns = [str(column).strip() for column in frame.columns]
    absent = [column for column in columns if column not in frame.columns]
    if absent:
        raise CompetitionFileError(f"{path}: missing column(s) {absent}; found {list(frame.columns)}")
    frame.attrs.update(source=str(path), encoding=encoding, missing=False)
    return frame


def read_test_questions(path: Path) -> list[CompetitionQuestion]:
    """A competition ``test.csv`` (``ID``, ``Question``), checked and parsed, in file order; the error
    lists every bad row."""
    return parse_test_table(read_competition_csv(path, ["ID", "Question"]), str(path))
