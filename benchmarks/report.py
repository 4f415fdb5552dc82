"""Printing benchmark results: Markdown tables, the target verdict (the exit code), and the committed
record of a run (``benchmarks/results/<name>.json``: the command, the commit, the CPU, the figures)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def verdict(met: bool, description: str) -> int:
    """Print whether the target ``description`` was met; return the script's exit code."""
    print(("target met: " if met else "TARGET MISSED: ") + description)
    return 0 if met else 1


def cpu_line() -> str:
    """The CPU as `.ci/run` prints it: model, cores and the SIMD extensions kernels are chosen by."""
    from fsku_kedro.models.compute_dtype import cpu_flags

    model = "unknown"
    try:
        model = next((line.split(":", 1)[1].strip() for line in
                      Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
                      if line.startswith("model name")), model)
    except OSError:
        pass
    flags = sorted(f for f in cpu_flags() if f == "avx2" or f.startswith(("avx512", "amx")))
    return f"{model} ({os.cpu_count()} cores); SIMD: {' '.join(flags) or 'none reported'}"


def cpu_kind() -> str:
    """``native_bf16`` where the CPU runs bfloat16 natively (``auto`` is bfloat16 there), else
    ``no_bf16``: the two kinds whose real-model figures differ in dtype and speed."""
    from fsku_kedro.models.compute_dtype import cpu_bfloat16

    return "native_bf16" if cpu_bfloat16()[0] else "no_bf16"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30,
                              check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def result_path(name: str, by_cpu_kind: bool = False) -> Path:
    """``benchmarks/results/<name>.json``, or ``<name>.<cpu kind>.json`` for figures that depend on
    the CPU kind (each kind keeps its own record)."""
    return RESULTS / (f"{name}.{cpu_kind()}.json" if by_cpu_kind else f"{name}.json")


def run_stamp() -> dict[str, str]:
    """The command that is running (as ``python <script> <args>``), the commit (marked ``+changes``
    when the tree differs from it), the CPU and the date."""
    commit = _git("rev-parse", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+changes"
    script = Path(sys.argv[0]).resolve()
    script_name = script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else sys.argv[0]
    return {"command": shlex.join(["python", script_name, *sys.argv[1:]]), "commit": commit, "cpu": cpu_line(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_result(name: str, figures: dict, by_cpu_kind: bool = False, **context: object) -> Path:
    """``result_path(name, by_cpu_kind)``: the figures with ``run_stamp()`` and ``context`` (models,
    settings)."""
    record = {**run_stamp(), **context, "figures": figures}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = result_path(name, by_cpu_kind)
    path.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def labelled_directory(text: str) -> tuple[str, Path]:
    """A ``--model LABEL=DIR`` argument as its label and directory."""
    label, _, directory = text.partition("=")
    if not label or not directory:
        raise argparse.ArgumentTypeError(f"--model takes LABEL=DIR, got {text!r}")
    return label, Path(directory)


def answer_record(rows: Sequence[dict], expected: dict[str, str], published: dict, order: str) -> dict[str, list]:
    """The answers ``rows`` (SubmissionRow fields) given in option order ``order`` (``own``, or
    ``shuffled_<seed>``), as columns: each question's ID, its options as shown (the published numbers in
    the order shown; None without options), the expected and the given answer, and the option
    probabilities in the order shown. ``published``: each question as published, by ID."""
    from fsku_kedro.questions import shuffled_order

    record: dict[str, list] = {"ID": [], "options_shown": [], "expected": [], "answer": [], "probabilities": []}
    for row in rows:
        question = published[row["ID"]]
        if not question.choices:
            shown = None
        elif order == "own":
            shown = [int(n) for n in question.choices]
        else:
            shown = list(shuffled_order(question, int(order.removeprefix("shuffled_"))))
        record["ID"].append(row["ID"])
        record["options_shown"].append(shown)
        record["expected"].append(expected[row["ID"]])
        record["answer"].append(row["answer"])
        record["probabilities"].append(row.get("option_probabilities"))
    return record


def answer_records(rows: Sequence[dict], sets: dict, seed: int | None = None) -> dict[str, dict[str, list]]:
    """Per option order of ``sets`` (``fsku_benchmark`` sets: order -> questions, labels) that ``rows``
    answered, each row naming its ``order``: its rows as ``answer_record`` keeps them. An order named
    ``shuffled`` (validation's) is the one shuffled by ``seed``; ``shuffled_<seed>`` names its own."""
    published = {q.ID: q for q in sets["own"][0]}
    records = {}
    for order, (_, labels) in sets.items():
        answered = [row for row in rows if row["order"] == order]
        if answered:
            records[order] = answer_record(answered, {label.ID: label.answer for label in labels}, published,
                                           f"shuffled_{seed}" if order == "shuffled" else order)
    return records


def latest(folder: Path, pattern: str) -> Path | None:
    """The last path under ``folder`` matching ``pattern`` in sorted order: for a Kedro versioned
    dataset, its newest version (versions are UTC timestamps that sort as text)."""
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def clone_beside_shared(holder: Path) -> Path:
    """``holder/fsku_kedro``: a clone of this checkout's HEAD (made when missing), with ../shared linked
    beside it when this checkout has one, as a user's clone would see it."""
    clone = holder / "fsku_kedro"
    if not (clone / ".git").is_dir():
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    shared = ROOT.parent / "shared"
    if shared.is_dir() and not (holder / "shared").exists():
        (holder / "shared").symlink_to(shared)
    return clone


def run_logged(command: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None,
               mode: str = "w") -> tuple[int, float]:
    """Runs ``command`` in ``cwd`` with its output written (``mode`` "w") or appended ("a") to ``log``,
    and ``env`` added to the environment; its exit code and wall seconds."""
    start = time.perf_counter()
    with log.open(mode, encoding="utf-8") as out:
        done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False,
                              env=None if env is None else {**os.environ, **env})
    return done.returncode, time.perf_counter() - start


def catalog_with_chunks(env: str | None):
    """The data catalog of environment ``env`` (None: base), after a knowledge_base run if the
    environment has no chunks yet."""
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    session = KedroSession.create(project_path=ROOT, env=env)
    catalog = session.load_context().catalog
    if not catalog.exists("chunks"):
        session.run(pipeline_names=["knowledge_base"])
        pipelines.set_requested(None)  # the next context types every pipeline's parameters again
        catalog = KedroSession.create(project_path=ROOT, env=env).load_context().catalog
    return catalog


def typed(catalog, name: str):
    """The ``name`` parameters block of ``catalog`` as its settings model, defaults filled in."""
    from fsku_kedro.parameters import ROOTS

    value = catalog.load(f"params:{name}")
    return value if isinstance(value, ROOTS[name]) else ROOTS[name].model_validate(value)


def derived_student(catalog, source_dir: Path, selection: str, layers: int, dtype: str, cache: Path):
    """The model at ``source_dir`` cut to ``layers`` layers by ``selection`` as the node derive_student cuts
    it (calibration passages from the catalog's chunks), saved once into ``cache`` and read from there."""
    from fsku_kedro.models.derivation import derive
    from fsku_kedro.models.loading import load_bundle, save_bundle
    from fsku_kedro.parameters.student_shape import StudentShapeSettings
    from fsku_kedro.pipelines.response_generation.nodes import calibration_passages

    if not (cache / "config.json").is_file():
        source = load_bundle(source_dir, dtype, False, source_dir.name)
        passages = calibration_passages(catalog.load("chunks"), StudentShapeSettings().calibration_passages)
        staging = cache.with_name(cache.name + ".partial")
        staging.mkdir(parents=True, exist_ok=True)
        save_bundle(staging, derive(source, passages, layers, selection, None))
        staging.rename(cache)
    return load_bundle(cache, dtype, False, f"qwen-coder-{selection}-{layers}")
