"""What goes into the competition package and how it is written.

Layout of the archive (``MANIFEST`` lists every other file with its SHA-256 and size):

    answer.py                 the entry: python answer.py test.csv [--out submission.csv]
    manifest.json             digests and sizes, input versions, git commit, measured speed, limit checks
    model/                    the served model directory (weights, tokenizer)
    knowledge/                chunks.parquet, bm25/, faiss/
    embedder/ or embedder.json  the embedding model, or the pinned reference to its installed package
    reranker/                 the rerank model, when one is configured
    prompts/*.txt             the prompt templates
    settings.json             the resolved inference and retrieval settings
    wheel/fsku_kedro-*.whl    this project, built as a wheel
    requirements.lock         the exact package versions of the environment (digests where pip records them)
    submission.csv            the submission this run wrote
    LICENSES/                 the licences of the project and of the model
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from fsku_kedro.hashing import file_sha256

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ENTRY = "answer.py"
ENTRY_SCRIPT = '''"""Answers a competition test.csv with the model and indices of this package, offline.

    python answer.py /path/to/test.csv [--out submission.csv]

The package is checked against manifest.json before anything is loaded; a changed or missing file
is refused by name. The project itself is imported from the wheel in wheel/.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(next(HERE.glob("wheel/*.whl"))))

from fsku_kedro.packaging.replay import main  # noqa: E402

sys.exit(main(HERE, sys.argv[1:]))
'''


@dataclass
class CompetitionPackage:
    """Everything one package holds, before it is written (see ``write_package``)."""

    model_dir: Path
    chunks: pd.DataFrame
    sparse_index: Any
    dense_index: Any
    embedder: Any
    reranker: Any
    prompts: dict[str, str]
    settings: dict[str, Any]
    submission: pd.DataFrame
    project_root: Path
    measurements: dict[str, Any] = field(default_factory=dict)
    input_versions: dict[str, str] = field(default_factory=dict)


def _write_embedder(embedder: Any, directory: Path) -> None:
    from fsku_kedro.knowledge.e5_engine import E5Engine

    if isinstance(embedder, E5Engine):
        if not embedder.reference:
            raise ValueError("the E5 engine was not loaded from a pinned package reference; it cannot be packaged")
        reference = {"kind": "e5_engine", "name": embedder.name, **embedder.reference}
        (directory / "embedder.json").write_text(json.dumps(reference, indent=2), encoding="utf-8")
        return
    embedder.model.save(str(directory / "embedder"))
    description = {"kind": "sentence_transformers", "name": embedder.name, "prompts": embedder.prompts,
                   "batch_size": embedder.batch_size}
    (directory / "embedder" / "fsku_embedder.json").write_text(json.dumps(description), encoding="utf-8")


def _write_reranker(reranker: Any, directory: Path) -> None:
    from fsku_kedro.knowledge.retrieval import CrossEncoderReranker, LLMReranker

    if reranker is None:
        return
    target = directory / "reranker"
    if isinstance(reranker, CrossEncoderReranker):
        reranker.model.save(str(target))
        kind = {"kind": "cross_encoder"}
    elif isinstance(reranker, LLMReranker):
        reranker.model.save_pretrained(target, safe_serialization=True)
        reranker.tokenizer.save_pretrained(target)
        (target / "prompt.txt").write_text(reranker.prompt_template, encoding="utf-8")
        kind = {"kind": "llm"}
    else:
        raise ValueError(f"cannot package a reranker of type {type(reranker).__name__}")
    (target / "fsku_reranker.json").write_text(json.dumps(kind), encoding="utf-8")


def _build_wheel(project_root: Path, target: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(target),
               str(project_root)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = list(target.glob("*.whl"))
    if result.returncode or len(wheels) != 1:
        raise RuntimeError(f"building the project wheel failed ({result.returncode}): {result.stderr[-2000:]}")


def _lock() -> str:
    """``name==version`` of every installed distribution, with the archive digest where pip recorded one."""
    result = subprocess.run([sys.executable, "-m", "pip", "inspect", "--local"], capture_output=True, text=True,
                            check=True)
    lines = []
    for entry in sorted(json.loads(result.stdout)["installed"], key=lambda e: e["metadata"]["name"].lower()):
        name, version = entry["metadata"]["name"], entry["metadata"]["version"]
        digests = (entry.get("direct_url") or {}).get("archive_info", {}).get("hashes", {})
        editable = (entry.get("direct_url") or {}).get("dir_info", {}).get("editable")
        if editable:
            lines.append(f"# {name}=={version} (this project, packaged as the wheel in wheel/)")
            continue
        suffix = f" --hash=sha256:{digests['sha256']}" if "sha256" in digests else ""
        lines.append(f"{name}=={version}{suffix}")
    return "\n".join(lines) + "\n"


def _git_commit(project_root: Path) -> str:
    result = subprocess.run(["git", "-C", str(project_root), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False)
    return result.stdout.strip() if result.returncode == 0 else "unknown (not a git checkout)"


def write_package(package: CompetitionPackage, directory: Path) -> dict[str, Any]:
    """Write every file of ``package`` into ``directory``, then its manifest; returns the manifest."""
    shutil.copytree(package.model_dir, directory / "model")
    knowledge = directory / "knowledge"
    (knowledge / "bm25").mkdir(parents=True)
    (knowledge / "faiss").mkdir()
    package.chunks.to_parquet(knowledge / "chunks.parquet", index=False)
    package.sparse_index.save(knowledge / "bm25")
    package.dense_index.save(knowledge / "faiss")
    _write_embedder(package.embedder, directory)
    _write_reranker(package.reranker, directory)
    (directory / "prompts").mkdir()
    for name, text in sorted(package.prompts.items()):
        (directory / "prompts" / f"{name}.txt").write_text(text, encoding="utf-8")
    (directory / "settings.json").write_text(json.dumps(package.settings, indent=2, ensure_ascii=False),
                                             encoding="utf-8")
    _build_wheel(package.project_root, directory / "wheel")
    (directory / "requirements.lock").write_text(_lock(), encoding="utf-8")
    package.submission.to_csv(directory / "submission.csv", index=False, encoding="utf-8-sig")
    licenses = directory / "LICENSES"
    licenses.mkdir()
    for path in [package.project_root / "LICENSE", *sorted((package.project_root / "LICENSES").glob("*"))]:
        if path.is_file():
            shutil.copy(path, licenses / path.name)
    (directory / ENTRY).write_text(ENTRY_SCRIPT, encoding="utf-8")
    files = {str(path.relative_to(directory)): {"sha256": file_sha256(path), "bytes": path.stat().st_size}
             for path in sorted(directory.rglob("*")) if path.is_file()}
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(package.project_root),
        "input_versions": package.input_versions,
        **package.measurements,
        "files": files,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    logger.info("Package: %d files, %.1f MB", len(files), sum(f["bytes"] for f in files.values()) / 1e6)
    return manifest
