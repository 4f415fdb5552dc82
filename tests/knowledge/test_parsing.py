from pathlib import Path

import pymupdf
import pytest

from fsku_kedro.knowledge.parsing import SkippedDocument, parse_document
from fsku_kedro.parameters.knowledge_base import ParsingSettings
from fsku_kedro.pipelines.knowledge_base.nodes import parse_documents
from tests.conftest import CORPUS_DIR

PARAMETERS = ParsingSettings(domain_keywords={"전자금융": ["전자금융"], "정보보안": ["암호", "접근통제"]})


def _pdf_bytes(build, **save_args) -> bytes:
    document = pymupdf.open()
    build(document)
    return document.tobytes(**save_args)


def test_project_pdfs_have_headings_tables_and_korean_text():
    pdfs = sorted(CORPUS_DIR.glob("*.pdf"))
    assert len(pdfs) >= 3
    for path in pdfs:
        parsed = parse_document(path.read_bytes(), path.name, PARAMETERS.heading_ratio)
        assert parsed.format == "pdf"
        assert parsed.tables >= 1, path.name
        assert parsed.text.startswith("# "), "the title is recognised as a level-1 heading"
        assert any(line.startswith("## ") for line in parsed.text.splitlines()), "section headings found"
        rows = [line for line in parsed.text.splitlines() if line.startswith("| ")]
        assert len(rows) >= 3 and "| --- |" in parsed.text
        hangul = sum("가" <= ch <= "힣" for ch in parsed.text)
        assert hangul > 1000


def test_table_cells_keep_their_text_in_order():
    parsed = parse_document((CORPUS_DIR / "cryptography_guide.pdf").read_bytes(), "cryptography_guide.pdf",
                            PARAMETERS.heading_ratio)
    assert "| 블록 암호 | AES, ARIA, SEED, LEA |" in parsed.text


def test_pdf_heading_detection_by_font_size():
    def build(document):
        page = document.new_page()
        page.insert_text((72, 72), "Big Title", fontsize=24)
        page.insert_text((72, 110), "Section one", fontsize=16)
        for i in range(5):
            page.insert_text((72, 140 + 14 * i), f"body line {i} with ordinary text", fontsize=11)

    parsed = parse_document(_pdf_bytes(build), "made.pdf", PARAMETERS.heading_ratio)
    assert parsed.title == "Big Title"
    assert parsed.text.splitlines()[0] == "# Big Title"
    assert "## Section one" in parsed.text
    assert "body line 0 with ordinary text body line 1" in parsed.text  # wrapped lines joined


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage \x00\xff", "corrupt"),
        (b"", "empty"),
    ],
)
def test_broken_pdfs_are_skipped_with_a_reason(data, reason):
    with pytest.raises(SkippedDocument, match=reason):
        parse_document(data, "broken.pdf", PARAMETERS.heading_ratio)


def test_encrypted_and_textless_pdfs_are_skipped():
    def text_page(document):
        document.new_page().insert_text((72, 72), "secret")

    encrypted = _pdf_bytes(text_page, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    with pytest.raises(SkippedDocument, match="encrypted"):
        parse_document(encrypted, "locked.pdf", PARAMETERS.heading_ratio)
    blank = _pdf_bytes(lambda document: document.new_page())
    with pytest.raises(SkippedDocument, match="no extractable text"):
        parse_document(blank, "blank.pdf", PARAMETERS.heading_ratio)


def test_legacy_korean_encodings_are_decoded():
    parsed = parse_document("# 전자금융\n\n본문입니다.".encode("cp949"), "old.md", PARAMETERS.heading_ratio)
    assert parsed.title == "전자금융" and "본문입니다." in parsed.text


def test_parse_documents_counts_skips_and_keeps_the_rest():
    raw = {path.name: path.read_bytes for path in sorted(CORPUS_DIR.iterdir())}
    raw["corrupt.pdf"] = lambda: b"%PDF-1.4 not really"
    raw["empty.txt"] = lambda: b""
    raw["notes.docx"] = lambda: b"PK\x03\x04"
    documents, report = parse_documents(raw, PARAMETERS)
    assert len(documents) == len(list(CORPUS_DIR.iterdir()))
    skipped = report[report.status == "skipped"].set_index("source")["reason"]
    assert set(skipped.index) == {"corrupt.pdf", "empty.txt", "notes.docx"}
    assert "corrupt" in skipped["corrupt.pdf"] and "unsupported" in skipped["notes.docx"]
    assert documents["doc_id"].is_unique
    assert set(documents["domain"]) <= {"전자금융", "정보보안"}


def test_parse_documents_fails_clearly_when_nothing_is_usable():
    with pytest.raises(ValueError, match="no usable document among 1 sources"):
        parse_documents({"x.pdf": lambda: b"junk"}, PARAMETERS)


def test_corpus_has_every_format():
    suffixes = {Path(p).suffix for p in CORPUS_DIR.iterdir()}
    assert {".pdf", ".md", ".txt"} <= suffixes
    assert len(list(CORPUS_DIR.iterdir())) >= 8
