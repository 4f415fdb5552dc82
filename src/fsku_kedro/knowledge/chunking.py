"""Field-aware chunking with sizes measured in tokens (architecture Appendix A).

A document (Markdown from ``parsing``) becomes:
- one ``title`` chunk: the title and the outline of headings;
- ``article`` chunks for law text: split at "제N조" boundaries, each keeping its law and article;
- ``table`` chunks: whole tables, split by rows with the header repeated when too long;
- ``body`` chunks: section text split recursively (paragraphs, then sentence ends such as
  "다.", ".", then ",", spaces and characters) and merged back up to ``max_tokens`` with an
  overlap of ``overlap_ratio`` of the limit between neighbours.
No chunk exceeds ``max_tokens`` as measured by the given token counter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fsku_kedro.hashing import stable_hash
from fsku_kedro.knowledge.cleaning import normalize_for_search
from fsku_kedro.parameters.knowledge_base import ChunkingSettings

TokenCounter = Callable[[str], int]

ARTICLE_LINE = re.compile(r"^\s*(?P<ref>제\s*\d+\s*조(?:\s*의\s*\d+)?)\s*(?:\((?P<name>[^)]*)\))?")
HEADING_LINE = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*$")
# Finer and finer separators; each is a regex and the text it matches stays with the left piece.
SEPARATORS = (r"\n\s*\n", r"\n", r"(?<=다\.)\s+", r"(?<![0-9])(?<=[.?!。])\s+", r"(?<=,)\s+", r"\s+")


@dataclass(frozen=True)
class Chunk:
    chunk_type: str
    section: str
    content: str
    token_count: int


@dataclass(frozen=True)
class _Section:
    path: str
    kind: str  # "body", "table" or "article"
    text: str


def _hard_split(text: str, max_tokens: int, count: TokenCounter) -> list[str]:
    """Cut a text with no usable separator into the longest prefixes that fit."""
    pieces = []
    while text:
        low, high = 1, len(text)
        while low < high:  # longest prefix within the limit
            middle = (low + high + 1) // 2
            if count(text[:middle]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        pieces.append(text[:low])
        text = text[low:]
    return pieces


def split_units(text: str, max_tokens: int, count: TokenCounter, level: int = 0) -> list[str]:
    """Split ``text`` at the finest separator level needed so that every unit fits the limit.

    Splitting always reaches sentence level, so chunks end at sentence ends where possible;
    below that it only goes as fine as needed.
    """
    if level >= len(SEPARATORS):
        return _hard_split(text, max_tokens, count)
    sentence_level = 3
    if level > sentence_level and count(text) <= max_tokens:
        return [text]
    units = []
    for part in re.split(SEPARATORS[level], text):
        if part.strip():
            units.extend(split_units(part.strip(), max_tokens, count, level + 1))
    return units


def tail_words(text: str, budget: int, count: TokenCounter) -> str:
    """The longest run of whole words ending ``text`` (never all of it) within ``budget`` tokens."""
    words = text.split(" ")
    tail = ""
    for start in range(len(words) - 1, 0, -1):
        candidate = " ".join(words[start:])
        if count(candidate) > budget:
            break
        tail = candidate
    return tail


def merge_units(units: list[str], max_tokens: int, overlap_tokens: int, count: TokenCounter) -> list[str]:
    """Greedily pack units into chunks of at most ``max_tokens``; each chunk after the first
    starts with the last words of the previous one, up to ``overlap_tokens``."""
    chunks: list[str] = []
    window: list[str] = []
    for unit in units:
        if window and count(" ".join([*window, unit])) > max_tokens:
            chunks.append(" ".join(window))
            budget = min(overlap_tokens, max_tokens - count(unit) - 1)
            tail = tail_words(chunks[-1], budget, count) if budget > 0 else ""
            window = [tail] if tail else []
        window.append(unit)
    if window:
        chunks.append(" ".join(window))
    return chunks


def _sections(text: str, title: str, config: ChunkingSettings) -> Iterator[_Section]:
    lines = text.splitlines()
    article_lines = [i for i, line in enumerate(lines) if ARTICLE_LINE.match(line.lstrip("#").strip())]
    if len(article_lines) >= config.min_articles_for_law:
        preamble = "\n".join(lines[: article_lines[0]]).strip()
        body = [line for line in preamble.splitlines() if not HEADING_LINE.match(line)]
        if "\n".join(body).strip():
            yield _Section(path=title, kind="body", text="\n".join(body).strip())
        bounds = [*article_lines, len(lines)]
        for start, end in zip(bounds, bounds[1:]):
            heading = lines[start].lstrip("#").strip()
            match = ARTICLE_LINE.match(heading)
            label = re.sub(r"\s+", "", match["ref"]) + (f"({match['name']})" if match["name"] else "")
            rest = heading[match.end() :].strip()
            article_text = "\n".join([rest, *lines[start + 1 : end]]).strip()
            article_text = "\n".join(ln for ln in article_text.splitlines() if not HEADING_LINE.match(ln))
            yield _Section(path=f"{title} {label}", kind="article", text=article_text.strip())
        return
    path: list[str] = []
    buffer: list[str] = []
    table: list[str] = []

    def flush_buffer() -> Iterator[_Section]:
        if "\n".join(buffer).strip():
            yield _Section(path=" > ".join(path) or title, kind="body", text="\n".join(buffer).strip())
        buffer.clear()

    def flush_table() -> Iterator[_Section]:
        if table:
            yield _Section(path=" > ".join(path) or title, kind="table", text="\n".join(table))
        table.clear()

    for line in lines:
        heading = HEADING_LINE.match(line)
        if heading:
            yield from flush_buffer()
            yield from flush_table()
            depth = len(heading["hashes"])
            path[:] = path[: depth - 1] + [heading["text"]]
            continue
        if line.strip().startswith("|"):
            yield from flush_buffer()
            table.append(line.strip())
            continue
        yield from flush_table()
        buffer.append(line)
    yield from flush_buffer()
    yield from flush_table()


def _table_chunks(section: _Section, max_tokens: int, count: TokenCounter) -> list[str]:
    rows = section.text.splitlines()
    separator = 1 if len(rows) > 1 and set(rows[1].replace("|", "").strip()) <= set("-: ") else None
    header = rows[: separator + 1] if separator is not None else rows[:1]
    body = rows[len(header) :]
    prefix = "\n".join([section.path, *header])
    if count("\n".join([section.path, *rows])) <= max_tokens or not body:
        return ["\n".join([section.path, *rows])]
    budget = max_tokens - count(prefix) - 1
    if budget < 8:  # a header that leaves no room: treat the table as text
        return merge_units(split_units(section.text, max_tokens, count), max_tokens, 0, count)
    pieces = []
    for row in body:
        pieces.extend(split_units(row, budget, count, level=len(SEPARATORS) - 1) if count(row) > budget else [row])
    groups = merge_units(pieces, budget, 0, count)
    return ["\n".join([prefix, group]) for group in groups]


def chunk_document(title: str, text: str, count: TokenCounter, config: ChunkingSettings) -> list[Chunk]:
    """Chunk one parsed document; see the module docstring for the rules."""
    chunks: list[Chunk] = []
    overlap = int(config.max_tokens * config.overlap_ratio)
    headings = [m["text"] for m in map(HEADING_LINE.match, text.splitlines()) if m]
    outline = [h for h in headings if h != title]
    title_units = [title, *outline]
    title_text = title
    for unit in title_units[1:]:
        candidate = f"{title_text} / {unit}" if title_text != title else f"{title}\n{unit}"
        if count(candidate) > config.max_tokens:
            break
        title_text = candidate
    if count(title_text) > config.max_tokens:
        title_text = _hard_split(title_text, config.max_tokens, count)[0]
    chunks.append(Chunk("title", title, title_text, count(title_text)))
    for section in _sections(text, title, config):
        if section.kind == "table":
            contents = _table_chunks(section, config.max_tokens, count)
        else:
            header = section.path
            budget = config.max_tokens - count(header) - 1
            if budget < 16:
                header, budget = "", config.max_tokens
            units = split_units(section.text, budget, count)
            bodies = merge_units(units, budget, min(overlap, budget // 2), count)
            contents = [f"{header}\n{body}" if header else body for body in bodies]
        for content in contents:
            tokens = count(content)
            chunks.append(Chunk(section.kind, section.path, content, tokens))
    return chunks


_READABLE = re.compile(r"[가-힣A-Za-z0-9]")


def quality_score(content: str, token_count: int, target_tokens: int) -> float:
    """A 0-1 heuristic: share of readable characters, length, and word diversity."""
    visible = [ch for ch in content if not ch.isspace()]
    if not visible:
        return 0.0
    readable = sum(1 for ch in visible if _READABLE.match(ch)) / len(visible)
    length = min(1.0, token_count / max(1, target_tokens // 4))
    words = content.split()
    diversity = len(set(words)) / len(words) if words else 0.0
    return round(0.5 * readable + 0.3 * length + 0.2 * diversity, 4)


def content_hash(content: str) -> str:
    """Hash of the searchable form of a text: equal for texts that differ only in spacing or case."""
    return stable_hash(" ".join(normalize_for_search(content).split()), length=64)


def chunk_id(source: str, section: str, content: str) -> str:
    """Stable id: the same source, section and content always give the same id."""
    return stable_hash(source, section, content)
