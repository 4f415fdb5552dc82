"""The corpus PDFs are built from the project's Markdown sources, reproducibly."""

import subprocess
import sys

from tests.conftest import CORPUS_DIR, PROJECT_ROOT


def test_pdf_builder_reproduces_the_committed_pdfs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/build_corpus_pdfs.py"),
         "--sources", str(PROJECT_ROOT / "data/01_raw/pdf_sources"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    built = sorted(p.name for p in tmp_path.glob("*.pdf"))
    assert built == sorted(p.name for p in CORPUS_DIR.glob("*.pdf"))
    for name in built:
        assert (tmp_path / name).read_bytes() == (CORPUS_DIR / name).read_bytes(), name
