"""Render the markdown sources in data/01_raw/pdf_sources/ into corpus PDFs.

Each ``<name>.md`` becomes ``<name>.pdf`` in the corpus folder. The layout is
deliberately simple but "real": headings are larger (and stroked, i.e. drawn
bold) than body text, and markdown tables become ruled tables whose cell
borders are vector lines, so ``page.find_tables()`` detects them.

All text is written with PyMuPDF's built-in CJK font ``pymupdf.Font("korea")``
(Droid Sans Fallback), which also covers Latin letters, digits and punctuation,
so every span on a page uses one font and ``page.get_text()`` returns the
original Korean text. Lines are wrapped only at spaces, never inside a word.

The output is deterministic: fixed metadata, no random document id, fonts
subset, objects garbage-collected.

Usage:
    python scripts/build_corpus_pdfs.py \
        --sources data/01_raw/pdf_sources --out data/01_raw/corpus
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pymupdf

LOG = logging.getLogger("build_corpus_pdfs")

# Page geometry (A4, points) and typography.
PAGE_W, PAGE_H = pymupdf.paper_size("a4")
MARGIN_X = 56.0
MARGIN_TOP = 60.0
MARGIN_BOTTOM = 60.0
CONTENT_W = PAGE_W - 2 * MARGIN_X

BUILTIN_FONT = "korea"  # PyMuPDF built-in CJK font (Droid Sans Fallback)
# Page resource name for the embedded copy. It must NOT be one of PyMuPDF's
# reserved CJK names ("korea", "china-s", ...): those insert a non-embedded
# Adobe-Korea1 font whose widths differ, which garbles text extraction.
FONT_RES = "KoSans"
BODY_SIZE = 10.0
TABLE_SIZE = 9.0
HEADING_SIZES = {1: 18.0, 2: 13.5, 3: 11.5}
# Leading = size * factor. Keep it below ~1.5: with wider line spacing MuPDF
# splits a paragraph into one text block per line.
LINE_FACTOR = 1.45
CELL_PAD = 4.0
WORD_GAP = 1.5  # extra points after each space inside table cells
BOLD_STROKE = 0.04  # stroke width (fraction of font size) that fakes bold

FIXED_DATE = "D:20250101000000Z"


@dataclass
class Block:
    """One markdown block: a heading, a paragraph or a table."""

    kind: str  # "heading" | "para" | "table"
    level: int = 0
    text: str = ""
    rows: list[list[str]] | None = None


def parse_markdown(md: str) -> list[Block]:
    """Split a restricted markdown dialect into blocks.

    Supported: ``#``/``##``/``###`` headings, paragraphs (consecutive
    non-blank lines, joined with a space) and pipe tables with a ``|---|``
    separator line. Inline ``**bold**`` markers are stripped.
    """
    blocks: list[Block] = []
    para: list[str] = []
    table: list[str] = []

    def flush_para() -> None:
        if para:
            blocks.append(Block("para", text=" ".join(s.strip() for s in para)))
            para.clear()

    def flush_table() -> None:
        if table:
            rows = []
            for line in table:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                    continue  # separator row
                rows.append(cells)
            blocks.append(Block("table", rows=rows))
            table.clear()

    for raw in md.splitlines():
        line = raw.replace("**", "").rstrip()
        if line.lstrip().startswith("|"):
            flush_para()
            table.append(line)
            continue
        flush_table()
        heading = re.match(r"^(#{1,3})\s+(.*)$", line)
        if heading:
            flush_para()
            blocks.append(Block("heading", level=len(heading.group(1)), text=heading.group(2).strip()))
        elif not line.strip():
            flush_para()
        else:
            para.append(line)
    flush_para()
    flush_table()
    return blocks


def wrap(text: str, font: pymupdf.Font, size: float, width: float) -> list[str]:
    """Greedy word wrap at spaces; a word wider than the line is split by characters."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.text_length(candidate, fontsize=size) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        # Overlong single word: hard-split (rare; only long identifiers).
        while font.text_length(word, fontsize=size) > width:
            cut = len(word)
            while cut > 1 and font.text_length(word[:cut], fontsize=size) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines or [""]


def cell_width(text: str, font: pymupdf.Font) -> float:
    """Width of a table-cell line including the widened spaces."""
    return font.text_length(text, fontsize=TABLE_SIZE) + WORD_GAP * text.count(" ")


def wrap_cell(text: str, font: pymupdf.Font, width: float) -> list[str]:
    """Word wrap for table cells (accounts for ``WORD_GAP``)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if cell_width(candidate, font) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines or [""]


class Renderer:
    """Keeps the current page and the vertical cursor while laying out blocks."""

    def __init__(self, doc: pymupdf.Document, font: pymupdf.Font) -> None:
        self.doc = doc
        self.font = font
        self.page: pymupdf.Page | None = None
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        self.page = self.doc.new_page(width=PAGE_W, height=PAGE_H)
        # Same resource name + same buffer on every page -> one embedded font.
        self.page.insert_font(fontname=FONT_RES, fontbuffer=self.font.buffer)
        self.y = MARGIN_TOP

    def ensure(self, height: float) -> None:
        """Start a new page if ``height`` points do not fit below the cursor."""
        if self.y + height > PAGE_H - MARGIN_BOTTOM:
            self.new_page()

    def text_line(self, x: float, baseline: float, text: str, size: float, bold: bool = False) -> None:
        # render_mode 2 = fill + stroke: a visually bold glyph in the same font,
        # so extraction still yields plain Unicode text.
        self.page.insert_text(
            (x, baseline),
            text,
            fontname=FONT_RES,
            fontsize=size,
            render_mode=2 if bold else 0,
            border_width=BOLD_STROKE if bold else 0.05,
            color=(0, 0, 0),
            fill=(0, 0, 0),
        )

    def cell_line(self, x: float, baseline: float, text: str, bold: bool) -> None:
        """Write one table-cell line word by word, widening every space.

        The space glyph is kept (so ``get_text()`` shows normal spacing) and
        each word is shifted right by ``WORD_GAP`` extra points: with the
        narrow space of this font, ``find_tables().extract()`` would otherwise
        glue the words of a cell together.
        """
        words = text.split(" ")
        space = self.font.text_length(" ", fontsize=TABLE_SIZE)
        for i, word in enumerate(words):
            last = i == len(words) - 1
            self.text_line(x, baseline, word if last else word + " ", TABLE_SIZE, bold=bold)
            x += self.font.text_length(word, fontsize=TABLE_SIZE) + space + WORD_GAP

    def heading(self, block: Block) -> None:
        size = HEADING_SIZES.get(block.level, HEADING_SIZES[3])
        leading = size * LINE_FACTOR
        lines = wrap(block.text, self.font, size, CONTENT_W)
        space_before = size * (0.9 if self.y > MARGIN_TOP else 0.0)
        # Keep a heading together with at least two body lines.
        self.ensure(space_before + leading * len(lines) + 2 * BODY_SIZE * LINE_FACTOR)
        self.y += space_before
        for line in lines:
            self.text_line(MARGIN_X, self.y + size, line, size, bold=True)
            self.y += leading
        if block.level == 1:
            # Thin rule under the document title.
            self.page.draw_line(
                (MARGIN_X, self.y), (PAGE_W - MARGIN_X, self.y), color=(0.3, 0.3, 0.3), width=0.8
            )
            self.y += size * 0.6
        else:
            self.y += size * 0.2

    def paragraph(self, block: Block) -> None:
        leading = BODY_SIZE * LINE_FACTOR
        lines = wrap(block.text, self.font, BODY_SIZE, CONTENT_W)
        while lines:
            self.ensure(leading)
            # As many lines as fit on this page go into ONE text object, so
            # MuPDF keeps the paragraph together as a single text block.
            room = int((PAGE_H - MARGIN_BOTTOM - self.y) // leading)
            chunk, lines = lines[:room], lines[room:]
            self.page.insert_text(
                (MARGIN_X, self.y + BODY_SIZE),
                chunk,
                fontname=FONT_RES,
                fontsize=BODY_SIZE,
                lineheight=LINE_FACTOR,
                color=(0, 0, 0),
            )
            self.y += leading * len(chunk)
        self.y += BODY_SIZE * 0.6  # paragraph spacing

    def column_widths(self, rows: list[list[str]]) -> list[float]:
        """Column widths that never split a word and fill at most the text width.

        Each column gets at least the width of its longest word; the space
        that is left is shared in proportion to how much wider each column
        would like to be (its longest cell on one line).
        """
        ncols = max(len(r) for r in rows)
        minimum = [0.0] * ncols
        natural = [0.0] * ncols
        for row in rows:
            for i, cell in enumerate(row):
                pad = 2 * CELL_PAD
                natural[i] = max(natural[i], cell_width(cell, self.font) + pad)
                for word in cell.split() or [""]:
                    minimum[i] = max(minimum[i], cell_width(word, self.font) + pad)
        if sum(natural) <= CONTENT_W:
            return natural
        spare = CONTENT_W - sum(minimum)
        if spare <= 0:  # pathological: scale the minimum widths down
            return [w * CONTENT_W / sum(minimum) for w in minimum]
        wish = [n - m for n, m in zip(natural, minimum)]
        return [m + spare * x / sum(wish) for m, x in zip(minimum, wish)]

    def table(self, block: Block) -> None:
        rows = block.rows or []
        if not rows:
            return
        ncols = max(len(r) for r in rows)
        rows = [r + [""] * (ncols - len(r)) for r in rows]
        widths = self.column_widths(rows)
        leading = TABLE_SIZE * 1.45
        wrapped = [[wrap_cell(c, self.font, w - 2 * CELL_PAD) for c, w in zip(r, widths)] for r in rows]
        heights = [max(len(c) for c in r) * leading + 2 * CELL_PAD for r in wrapped]
        # Tables are kept on one page so the detected table has all rows.
        self.ensure(sum(heights) + 4)
        self.y += 2
        for r_idx, (cells, h) in enumerate(zip(wrapped, heights)):
            x = MARGIN_X
            for lines, w in zip(cells, widths):
                rect = pymupdf.Rect(x, self.y, x + w, self.y + h)
                # Cell border as vector strokes; header row gets a light fill.
                self.page.draw_rect(
                    rect,
                    color=(0, 0, 0),
                    fill=(0.88, 0.88, 0.88) if r_idx == 0 else None,
                    width=0.6,
                )
                ty = self.y + CELL_PAD
                for line in lines:
                    self.cell_line(x + CELL_PAD, ty + TABLE_SIZE, line, bold=(r_idx == 0))
                    ty += leading
                x += w
            self.y += h
        self.y += BODY_SIZE * 0.9


def build_pdf(source: Path, target: Path) -> None:
    """Render one markdown file into one PDF."""
    md = source.read_text(encoding="utf-8")
    blocks = parse_markdown(md)
    font = pymupdf.Font(BUILTIN_FONT)
    doc = pymupdf.open()
    renderer = Renderer(doc, font)
    for block in blocks:
        if block.kind == "heading":
            renderer.heading(block)
        elif block.kind == "para":
            renderer.paragraph(block)
        else:
            renderer.table(block)
    title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), source.stem)
    # Fixed metadata keeps the output byte-stable between runs.
    doc.set_metadata(
        {
            "title": title,
            "author": "fsku_kedro corpus builder",
            "subject": source.name,
            "creator": "scripts/build_corpus_pdfs.py",
            "producer": "PyMuPDF",
            "creationDate": FIXED_DATE,
            "modDate": FIXED_DATE,
            "keywords": "",
            "trapped": "",
        }
    )
    doc.subset_fonts()  # embed only the glyphs actually used
    target.parent.mkdir(parents=True, exist_ok=True)
    doc.save(target, garbage=4, deflate=True, no_new_id=True)
    LOG.info("wrote %s (%d pages, %d bytes)", target, doc.page_count, target.stat().st_size)
    doc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sources", type=Path, default=Path("data/01_raw/pdf_sources"), help="folder of *.md sources"
    )
    parser.add_argument("--out", type=Path, default=Path("data/01_raw/corpus"), help="folder for the PDFs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    sources = sorted(args.sources.glob("*.md"))
    if not sources:
        LOG.error("no markdown sources found in %s", args.sources)
        return 1
    for src in sources:
        build_pdf(src, args.out / f"{src.stem}.pdf")
    LOG.info("built %d PDF(s) into %s", len(sources), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
