"""Sentences of the project's corpus, the raw material of the benchmarks' synthetic data."""

from __future__ import annotations

import re
from pathlib import Path

from fsku_kedro.knowledge.cleaning import clean_text
from fsku_kedro.knowledge.parsing import parse_document
from fsku_kedro.parameters.knowledge_base import ParsingSettings

ROOT = Path(__file__).resolve().parents[1]


def corpus_sentences() -> list[str]:
    """Body sentences (ending in "다.") of every corpus document, headings and tables left out."""
    sentences, heading_ratio = [], ParsingSettings().heading_ratio
    for path in sorted((ROOT / "data/01_raw/corpus").iterdir()):
        text = clean_text(parse_document(path.read_bytes(), path.name, heading_ratio).text)
        for line in text.splitlines():
            if line.startswith(("#", "|")):
                continue
            sentences += [s.strip() for s in re.split(r"(?<=다\.)\s+", line) if len(s.strip()) > 15]
    return sentences
