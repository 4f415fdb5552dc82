"""Parsing source documents (PDF, Markdown, plain text) into one Markdown-like text.

PDFs are read with PyMuPDF: text in reading order, headings recognised by font size,
tables found with ``Page.find_tables`` and kept as Markdown table rows. Markdown and text
files are decoded (UTF-8, then the Korean legacy encodings) and kept as they are.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from fsku_kedro.text_decoding import KOREAN_TEXT_ENCODINGS, decode_korean_text

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {".pdf", ".md", ".markdown", ".txt"}


class SkippedDocument(Exception):
    """A source that cannot be used (corrupt, encrypted, empty, undecodable); the message says why."""


@dataclass
class ParsedDocument:
    """A document reduced to Markdown: ``#`` headings, paragraphs and ``|`` table rows."""

    source: str
    format: str
    title: str
    text: str
    pages: int = 1
    tables: int = 0
    headings: list[str] = field(default_factory=list)


def _table_markdown(rows: list[list[str | None]]) -> str:
    cleaned = [[" ".join((cell or "").split()) for cell in row] for row in rows if any(cell for cell in row)]
    if not cleaned:
        return ""
    width = max(len(row) for row in cleaned)
    cleaned = [row + [""] * (width - len(row)) for row in cleaned]
    lines = ["| " + " | ".join(row) + " |" for row in cleaned]
    lines.insert(1, "| " + " | ".join(["---"] * width) + " |")
    return "\n".join(lines)


def _table_cells(page, table) -> list[list[str | None]]:
    """Cell texts read by clipping the page to each cell, which keeps the reading order of
    punctuation that ``Table.extract`` can misplace with some CJK fonts."""
    import pymupdf

    return [
        [page.get_text("text", clip=pymupdf.Rect(cell), sort=True) if cell else None for cell in row.cells]
        for row in table.rows
    ]


def _inside(bbox: tuple[float, ...], rect: tuple[float, ...], tolerance: float = 1.0) -> bool:
    x0, y0, x1, y1 = bbox
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return rect[0] - tolerance <= cx <= rect[2] + tolerance and rect[1] - tolerance <= cy <= rect[3] + tolerance


def parse_pdf(data: bytes, source: str, heading_ratio: float) -> ParsedDocument:
    """Parse PDF bytes; raise ``SkippedDocument`` for corrupt, encrypted or text-less files."""
    import pymupdf

    try:
        document = pymupdf.open(stream=data, filetype="pdf")
    except Exception as error:  # PyMuPDF raises several types for broken files
        raise SkippedDocument(f"corrupt PDF ({type(error).__name__}: {error})") from error
    with document:
        if document.needs_pass:
            raise SkippedDocument("encrypted PDF (password required)")
        if document.page_count == 0:
            raise SkippedDocument("corrupt PDF: no readable pages")
        # items: (page, y, kind, payload); kind is "line" with (text, size, bold) or "table" with markdown
        items: list[tuple[int, float, str, object]] = []
        table_count = 0
        for page_number, page in enumerate(document):
            try:
                tables = list(page.find_tables().tables)
            except Exception as error:  # a malformed page must not lose the rest of the document
                logger.warning("%s: page %d: table detection failed: %s", source, page_number + 1, error)
                tables = []
            rects = [tuple(table.bbox) for table in tables]
            for table in tables:
                markdown = _table_markdown(_table_cells(page, table))
                if markdown:
                    items.append((page_number, table.bbox[1], "table", markdown))
                    table_count += 1
            for block in page.get_text("dict", sort=True)["blocks"]:
                if block.get("type") != 0:
                    continue
                for line in block["lines"]:
                    if any(_inside(tuple(line["bbox"]), rect) for rect in rects):
                        continue
                    spans = [span for span in line["spans"] if span["text"].strip()]
                    if not spans:
                        continue
                    text = "".join(span["text"] for span in line["spans"]).strip()
                    size = round(max(span["size"] for span in spans), 1)
                    bold = any(span["flags"] & 16 for span in spans)
                    top, bottom = line["bbox"][1], line["bbox"][3]
                    items.append((page_number, top, "line", (text, size, bold, top, bottom)))
        lines = [payload for _, _, kind, payload in items if kind == "line"]
        if not lines and not table_count:
            raise SkippedDocument("PDF has no extractable text (scanned image?)")
        sizes = Counter()
        for text, size, *_ in lines:
            sizes[size] += len(text)
        body_size = sizes.most_common(1)[0][0] if sizes else 0.0
        heading_sizes = sorted({s for _, s, *_ in lines if s >= body_size * heading_ratio}, reverse=True)
        level_of = {size: min(index + 1, 4) for index, size in enumerate(heading_sizes)}

        parts: list[str] = []
        headings: list[str] = []
        paragraph: list[str] = []
        previous: tuple[int, float] | None = None  # (page, bottom) of the last body line

        def flush() -> None:
            if paragraph:
                parts.append(" ".join(paragraph))
                paragraph.clear()

        for page_number, _, kind, payload in sorted(items, key=lambda item: (item[0], item[1])):
            if kind == "table":
                flush()
                parts.append(str(payload))
                previous = None
                continue
            text, size, _bold, top, bottom = payload  # type: ignore[misc]
            if size in level_of and len(text) <= 120:
                flush()
                parts.append("#" * level_of[size] + " " + text)
                headings.append(text)
                previous = None
                continue
            # A wrapped line continues the paragraph; a gap taller than half a line starts a new one.
            # (a paragraph running over a page break continues on the next page)
            if previous is not None and previous[0] == page_number and top - previous[1] > 0.5 * size:
                flush()
            previous = (page_number, bottom)
            paragraph.append(text)
        flush()
        metadata_title = (document.metadata or {}).get("title") or ""
        title = headings[0] if headings else metadata_title or PurePosixPath(source).stem
        return ParsedDocument(
            source=source,
            format="pdf",
            title=title,
            text="\n\n".join(parts),
            pages=document.page_count,
            tables=table_count,
            headings=headings,
        )


def decode_text(data: bytes, source: str) -> str:
    """Decode bytes as UTF-8 (with or without BOM) or a Korean legacy encoding."""
    try:
        return decode_korean_text(data)[0]
    except UnicodeDecodeError:
        raise SkippedDocument(f"cannot decode as any of {', '.join(KOREAN_TEXT_ENCODINGS)}") from None


def parse_text(data: bytes, source: str) -> ParsedDocument:
    """Parse a Markdown or plain-text file; the title is the first heading or first line."""
    text = decode_text(data, source)
    if not text.strip():
        raise SkippedDocument("empty file")
    suffix = PurePosixPath(source).suffix.lower()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    headings = [line.lstrip("#").strip() for line in lines if line.startswith("#")]
    title = headings[0] if headings else lines[0][:100]
    tables = sum(
        1
        for index, line in enumerate(lines)
        if line.startswith("|") and (index == 0 or not lines[index - 1].startswith("|"))
    )
    return ParsedDocument(
        source=source,
        format="markdown" if suffix in {".md", ".markdown"} else "text",
        title=title,
        text=text,
        tables=tables,
        headings=headings,
    )


def parse_document(data: bytes, source: str, heading_ratio: float) -> ParsedDocument:
    """Parse one source by its suffix; unsupported suffixes raise ``SkippedDocument``."""
    suffix = PurePosixPath(source).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SkippedDocument(f"unsupported file type {suffix or '(none)'}")
    if not data:
        raise SkippedDocument("empty file")
    if suffix == ".pdf":
        return parse_pdf(data, source, heading_ratio=heading_ratio)
    return parse_text(data, source)
