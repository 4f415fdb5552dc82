"""Pages made when the site is built (mkdocs-gen-files): the configuration reference from the settings
models, and the tables of the Markdown pages from the committed benchmark records.

A page asks for a record's section with a line ``<!-- record: NAME -->`` (``NAME``: a file under
benchmarks/results without ``.json``; ``*`` matches any characters), for one figure of a record in its
text with ``<!-- figure: NAME PATH -->`` or ``<!-- figure: NAME PATH | SPEC -->`` (tables.FIGURE; a
marker naming no figure stops the build), and for the README's headline block with
``<!-- readme-results -->``. Records no page asks for are listed on experiments/other_records.md,
so every record is shown somewhere."""

from __future__ import annotations

import fnmatch
import importlib.util
import logging
import re
import sys
from pathlib import Path

import mkdocs_gen_files

DOCS = Path(__file__).resolve().parent
log = logging.getLogger("fsku_kedro.docs")


def _load_tables():
    spec = importlib.util.spec_from_file_location("fsku_docs_tables", DOCS / "tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tables = _load_tables()
RECORD = tables.RECORD
README_RESULTS = re.compile(r"^<!-- readme-results -->[ \t]*$", flags=re.M)
OTHER = "experiments/other_records.md"


def _section(page: str, name: str, record: dict) -> str:
    """The record's section; its figure (``<name>.png`` beside the record) is copied beside the page."""
    png = tables.RESULTS / f"{name}.png"
    image = None
    if png.is_file():
        target = Path(page).parent / png.name
        with mkdocs_gen_files.open(target.as_posix(), "wb") as out:
            out.write(png.read_bytes())
        image = png.name
    return tables.record_section(name, record, image)


def _readme_block(page: str) -> str:
    """The README's results block on a docs page, its figure copied beside the page."""
    for name in tables.HEADLINE:
        png = tables.RESULTS / f"{name}.png"
        if png.is_file():
            with mkdocs_gen_files.open((Path(page).parent / png.name).as_posix(), "wb") as out:
                out.write(png.read_bytes())
    return tables.readme_block(image_prefix="")


def main() -> None:
    records = tables.load_records()
    placed: set[str] = set()

    with mkdocs_gen_files.open("reference/configuration.md", "w") as out:
        out.write(tables.configuration_reference())

    for source in sorted(DOCS.rglob("*.md")):
        page = source.relative_to(DOCS).as_posix()
        text = source.read_text(encoding="utf-8")
        if not (RECORD.search(text) or README_RESULTS.search(text) or tables.FIGURE.search(text)):
            continue

        def expand(match: re.Match, page: str = page) -> str:
            names = [name for name in records if fnmatch.fnmatchcase(name, match["pattern"])]
            if not names:
                return (f"*No record matches `benchmarks/results/{match['pattern']}.json` yet; its script "
                        "writes it when it runs on real models.*")
            placed.update(names)
            return "\n\n".join(_section(page, name, records[name]) for name in names)

        text = README_RESULTS.sub(lambda _, page=page: _readme_block(page), RECORD.sub(expand, text))
        try:
            text = tables.expand_figures(text, records)
        except ValueError as error:
            raise ValueError(f"docs/{page}: {error}") from None
        with mkdocs_gen_files.open(page, "w") as out:
            out.write(text)

    rest = [name for name in records if name not in placed]
    parts = ["# Other records",
             "Records under `benchmarks/results/` that no experiment page shows yet, listed as recorded."]
    if not rest:
        parts.append("None: every record is on an experiment page.")
    for name in rest:
        parts += [f"## {name}", _section(OTHER, name, records[name])]
    with mkdocs_gen_files.open(OTHER, "w") as out:
        out.write("\n\n".join(parts) + "\n")
    log.info("records on pages: %d, on %s: %d", len(placed), OTHER, len(rest))


main()
