"""Answering a test.csv from an unpacked competition package, offline (the package's answer.py).

Every file the manifest lists is checked first; then the questions are read and checked, retrieved
against the packaged indices and answered with the packaged model and settings, through the same
functions the inference pipeline runs, and ``submission.csv`` is written as the pipeline writes it.
Answers are appended to a progress file as batches finish, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from fsku_kedro.errors import UserInputError

logger = logging.getLogger("fsku_kedro.packaging.replay")


class PackageIntegrityError(RuntimeError):
    """A file of the package is missing or differs from the manifest."""


def verify(root: Path) -> dict[str, Any]:
    """The manifest, after every file it lists is present with its size and SHA-256."""
    from fsku_kedro.hashing import file_sha256
    from fsku_kedro.packaging.contents import MANIFEST

    manifest_file = root / MANIFEST
    if not manifest_file.is_file():
        raise PackageIntegrityError(f"{manifest_file} is missing: this is not a complete package")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    problems = []
    for name, expected in manifest["files"].items():
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != expected["bytes"] or file_sha256(path) != expected["sha256"]:
            problems.append(f"{name}: changed (its SHA-256 differs from the manifest)")
    if problems:
        raise PackageIntegrityError("the package does not match its manifest:\n- " + "\n- ".join(problems))
    return manifest


def _embedder(root: Path) -> Any:
    from fsku_kedro.models.loading import load_e5_engine, load_embedder

    reference = root / "embedder.json"
    if reference.is_file():
        spec = json.loads(reference.read_text(encoding="utf-8"))
        return load_e5_engine(spec["distribution"], spec["files"], spec["name"])
    description = json.loads((root / "embedder" / "fsku_embedder.json").read_text(encoding="utf-8"))
    embedder = load_embedder(str(root / "embedder"), prompts=description["prompts"])
    embedder.name, embedder.batch_size = description["name"], description["batch_size"]
    return embedder


def _reranker(root: Path) -> Any:
    from fsku_kedro.models.loading import load_reranker

    folder = root / "reranker"
    if not folder.is_dir():
        return None
    kind = json.loads((folder / "fsku_reranker.json").read_text(encoding="utf-8"))["kind"]
    return load_reranker(kind, str(folder), str(folder / "prompt.txt") if kind == "llm" else None)


def answer_package(root: Path, test_csv: Path, out: Path, work: Path) -> Path:
    """Write ``out`` (ID,Answer) for ``test_csv`` with the package at ``root``, and beside it
    ``<out>.rows.csv``: how each answer was made (method, fallback and its reason, confidence)."""
    import pandas as pd

    from fsku_kedro.answering.submission import answer_test_questions, write_submission
    from fsku_kedro.competition_csv import read_test_questions
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.knowledge.dense import DenseIndex
    from fsku_kedro.knowledge.passages import retrieve_passages
    from fsku_kedro.knowledge.sparse import SparseIndex
    from fsku_kedro.models.loading import load_inference_model
    from fsku_kedro.parameters.inference import InferenceSettings
    from fsku_kedro.parameters.retrieval import RetrievalSettings

    verify(root)
    settings = json.loads((root / "settings.json").read_text(encoding="utf-8"))
    inference = InferenceSettings.model_validate(settings["inference"])
    retrieval = RetrievalSettings.model_validate(settings["retrieval"])
    questions = read_test_questions(test_csv)
    knowledge = root / "knowledge"
    passages, _ = retrieve_passages(questions, pd.read_parquet(knowledge / "chunks.parquet"),
                                    SparseIndex.load(knowledge / "bm25"), DenseIndex.load(knowledge / "faiss"),
                                    _embedder(root), _reranker(root), {}, retrieval)
    model = load_inference_model(str(root / "model"), inference)
    prompts = {path.stem: (lambda text=path.read_text(encoding="utf-8"): text)
               for path in sorted((root / "prompts").glob("*.txt"))}
    work.mkdir(parents=True, exist_ok=True)
    rows = answer_test_questions(questions, passages, model, prompts, ResponseStore(work / "answers.progress.jsonl"),
                                 inference)
    submission, details = write_submission(questions, rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    submission.to_csv(out, index=False, encoding="utf-8-sig")
    details.to_csv(out.with_suffix(".rows.csv"), index=False, encoding="utf-8")
    return out


def main(root: Path, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="answer.py", description="Answer a competition test.csv offline.")
    parser.add_argument("test_csv", type=Path)
    parser.add_argument("--out", type=Path, default=Path("submission.csv"))
    parser.add_argument("--work", type=Path, default=Path("answer_work"), help="progress file, for a resume")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(name, value)
    import fsku_kedro

    logger.info("fsku_kedro from %s", Path(fsku_kedro.__file__).parent)
    try:
        out = answer_package(root, args.test_csv, args.out, args.work)
    except PackageIntegrityError as error:
        logger.error("%s", error)
        return 3
    except UserInputError as error:  # a test.csv that cannot be read, named with its file and row
        logger.error("%s", error)
        return 2
    logger.info("wrote %s", out)
    return 0
