"""Old versions of the large datasets: the retention rule, what points to a version (a real sqlite
MLflow store, a package manifest), and `python -m fsku_kedro.versions` on a project copy's tree."""

import json
import os
import shutil
import zipfile
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from fsku_kedro.datasets.disk_space import human_bytes
from fsku_kedro.versions.disk import VersionedFolder, directory_bytes, versions_on_disk
from fsku_kedro.versions.references import (
    VersionIndex,
    mlflow_references,
    package_references,
    references_from_manifest,
    references_from_tags,
)
from fsku_kedro.versions.retention import UNFINISHED, plan_retention
from tests.conftest import PROJECT_ROOT

V1, V2, V3, V4 = "2026-12-01T10.00.00.000Z", "2026-12-02T10.00.00.000Z", "2026-12-03T10.00.00.000Z", \
    "2026-12-04T10.00.00.000Z"


def _by_version(plan, dataset):
    return {d.version: d for d in plan.decisions if d.dataset == dataset}


# ---------- the rule ----------

def test_the_last_n_are_kept_and_older_versions_removed():
    plan = plan_retention({"distilled_student": [V2, V1, V4, V3], "student_adapter": [V1]}, keep_last=2)
    student = _by_version(plan, "distilled_student")
    assert [d.version for d in plan.decisions if d.dataset == "distilled_student"] == [V4, V3, V2, V1]
    assert student[V4].keep and student[V3].keep and student[V4].reasons == ("one of the last 2",)
    assert not student[V2].keep and not student[V1].keep and student[V1].reasons == ()
    assert _by_version(plan, "student_adapter")[V1].keep, "each dataset has its own N"
    assert {(d.dataset, d.version) for d in plan.removed} == {("distilled_student", V2),
                                                              ("distilled_student", V1)}


def test_referenced_versions_are_kept_with_every_reason():
    referenced = {
        ("distilled_student", V1): ["MLflow run abc: model_location.distilled_student"],
        ("compressed_student", V1): ["competition_package v9: manifest model",
                                     "MLflow run def: input_version.compressed_student:path"],
        ("distilled_student", "2020-01-01T00.00.00.000Z"): ["MLflow run old: a version no longer on disk"],
    }
    found = {"distilled_student": [V1, V2, V3], "compressed_student": [V1, V2, V3]}
    plan = plan_retention(found, 1, referenced)
    student, compressed = _by_version(plan, "distilled_student"), _by_version(plan, "compressed_student")
    assert student[V1].reasons == ("MLflow run abc: model_location.distilled_student",)
    assert compressed[V1].reasons == ("MLflow run def: input_version.compressed_student:path",
                                      "competition_package v9: manifest model")
    assert not student[V2].keep and not compressed[V2].keep
    assert len(plan.decisions) == 6, "a reference to a version that is not on disk adds nothing"


def test_an_unfinished_version_is_kept_but_not_counted_among_the_last_n():
    found = {"distilled_student": [V1, V2, V3]}
    plan = plan_retention(found, 1, unfinished={("distilled_student", V3)})
    student = _by_version(plan, "distilled_student")
    assert student[V3].reasons == (UNFINISHED,), "a save may still be writing it"
    assert student[V2].reasons == ("one of the last 1",), "the newest finished version is the one kept"
    assert not student[V1].keep
    forced = plan_retention(found, 1, unfinished={("distilled_student", V3)}, remove_unfinished=True)
    assert [d.version for d in forced.removed] == [V3, V1]


def test_keeping_no_version_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        plan_retention({"distilled_student": [V1]}, 0)


# ---------- what points to a version ----------

def _version(root: Path, dataset: str, version: str, size: int = 1000, finished: bool = True) -> Path:
    """A version folder ``root/<dataset>/<version>`` holding ``<dataset>/weights`` of ``size`` bytes."""
    folder = root / dataset / version
    inside = folder / (dataset if finished else f".{dataset}.abc123")
    inside.mkdir(parents=True)
    (inside / "weights").write_bytes(b"\0" * size)
    return folder


@pytest.fixture
def tree(tmp_path):
    models = tmp_path / "06_models"
    for version in (V1, V2, V3):
        _version(models, "distilled_student", version)
        _version(models, "compressed_student", version)
    _version(models, "distilled_student", V4, finished=False)
    folders = [VersionedFolder("distilled_student", models / "distilled_student"),
               VersionedFolder("compressed_student", models / "compressed_student")]
    return models, [version for folder in folders for version in versions_on_disk(folder)]


def test_versions_on_disk_are_listed_newest_first_with_size_and_state(tree):
    _, versions = tree
    student = [v for v in versions if v.dataset == "distilled_student"]
    assert [v.version for v in student] == [V4, V3, V2, V1]
    assert [v.finished for v in student] == [False, True, True, True]
    assert student[1].bytes == 1000


def test_run_tags_and_manifests_point_to_versions(tree):
    models, versions = tree
    index = VersionIndex(versions)
    tags = {
        "model_location.distilled_student": str(models / "distilled_student" / V1 / "distilled_student"),
        "input_version.distilled_student:path": V1,
        "input_version.compressed_student:path": V2,
        "input_version.chunks": V1,  # not a dataset this index holds
        "model_location.elsewhere": "/somewhere/else/model",
        "losses": "distillm_v2",
    }
    assert references_from_tags("r1", tags, index) == {
        ("distilled_student", V1): ["MLflow run r1: input_version.distilled_student:path, "
                                    "model_location.distilled_student"],
        ("compressed_student", V2): ["MLflow run r1: input_version.compressed_student:path"],
    }
    manifest = {"model": str(models / "compressed_student" / V1 / "compressed_student"),
                "input_versions": {"compressed_student@path": V1, "chunks": V2}}
    assert references_from_manifest("package P", manifest, index) == {
        ("compressed_student", V1): ["package P: manifest model, "
                                     "manifest input_versions.compressed_student@path"],
    }


def test_references_are_read_from_a_real_mlflow_store_deleted_runs_included(tree, tmp_path):
    models, versions = tree
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("fsku_kedro")
    kept = client.create_run(experiment).info.run_id
    saved = models / "distilled_student" / V2 / "distilled_student"
    client.set_tag(kept, "model_location.distilled_student", str(saved))
    deleted = client.create_run(experiment).info.run_id
    client.set_tag(deleted, "input_version.compressed_student:path", V1)
    client.delete_run(deleted)
    other = client.create_run(client.create_experiment("other")).info.run_id
    client.set_tag(other, "input_version.distilled_student:path", V1)

    references = mlflow_references(uri, VersionIndex(versions))
    assert references == {
        ("distilled_student", V2): [f"MLflow run {kept}: model_location.distilled_student"],
        ("compressed_student", V1): [f"MLflow run {deleted}: input_version.compressed_student:path"],
        ("distilled_student", V1): [f"MLflow run {other}: input_version.distilled_student:path"],
    }
    assert mlflow_references(f"sqlite:///{tmp_path / 'none.db'}", VersionIndex(versions)) == {}
    assert not (tmp_path / "none.db").exists(), "a missing store is not created"


def test_package_manifests_inside_the_archives_point_to_versions(tree, tmp_path):
    models, versions = tree
    archive = tmp_path / "competition_package.zip"
    manifest = {"model": str(models / "compressed_student" / V2 / "compressed_student"), "input_versions": {}}
    with zipfile.ZipFile(archive, "w") as package:
        package.writestr("manifest.json", json.dumps(manifest))
        package.writestr("model/config.json", "{}")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    archives = [("competition_package X", archive), ("broken", broken)]
    references = package_references(archives, VersionIndex(versions))
    assert references == {("compressed_student", V2): ["competition_package X: manifest model"]}


# ---------- the command on a project copy ----------

@pytest.fixture
def project(tmp_path, monkeypatch):
    """The project's configuration in a temporary root (the package is the installed one); MLflow's
    process-wide tracking URI, which the session sets, is put back afterwards."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    for folder in ("conf/local", "src", "logs"):
        (root / folder).mkdir()
    monkeypatch.chdir(root)
    previous = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    yield root
    mlflow.set_tracking_uri(previous[0])
    if previous[1] is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous[1]


def _model_version(folder: Path, version: str, model_dir: Path) -> Path:
    """A finished version of a model dataset: a copy of a real model directory."""
    target = folder / version / folder.name
    shutil.copytree(model_dir, target)
    return target


@pytest.mark.slow
def test_the_command_lists_then_removes_what_nothing_points_to(project, tiny_llama_dir, capsys):
    from fsku_kedro.versions.__main__ import main

    data = project / "data"
    distilled, compressed = data / "06_models/distilled_student", data / "06_models/compressed_student"
    adapter = data / "06_models" / "distillation" / "round_1" / "student_adapter"
    for version in (V1, V2, V3):
        _model_version(distilled, version, tiny_llama_dir)
    for version in (V1, V2, V3, V4):
        _model_version(compressed, version, tiny_llama_dir)
    for version in (V1, V2):
        (adapter / version / "student_adapter").mkdir(parents=True)
        (adapter / version / "student_adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    (adapter / V3 / ".student_adapter.x1y2").mkdir(parents=True)  # a save under way
    chunks = data / "03_primary" / "chunks.parquet"
    for version in (V1, V2, V3):  # versioned, but not a directory dataset: never touched
        (chunks / version).mkdir(parents=True)
        (chunks / version / "chunks.parquet").write_bytes(b"PAR1")

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("fsku_kedro")).info.run_id
    saved = (distilled / V1 / "distilled_student").resolve()
    client.set_tag(run, "model_location.distilled_student", str(saved))
    client.set_tag(run, "input_version.compressed_student:path", V2)
    package = data / "09_package" / "competition_package.zip" / V4 / "competition_package.zip"
    package.parent.mkdir(parents=True)
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"model": str(compressed / V1 / "compressed_student"),
                                                      "input_versions": {"compressed_student@path": V1}}))

    removed = [distilled / V2, compressed / V3, adapter / V1]
    freed = sum(directory_bytes(path) for path in removed)
    assert main(["--keep", "1"]) == 0
    dry = capsys.readouterr().out
    lines = {tuple(line.split()[:3]) for line in dry.splitlines()}
    assert {("distilled_student", V2, "remove"), ("compressed_student", V3, "remove"),
            ("round_1.student_adapter", V1, "remove")} <= lines, dry
    assert {("distilled_student", V3, "keep"), ("distilled_student", V1, "keep"),
            ("compressed_student", V4, "keep"), ("compressed_student", V2, "keep"),
            ("compressed_student", V1, "keep"),
            ("round_1.student_adapter", V2, "keep"), ("round_1.student_adapter", V3, "keep")} <= lines, dry
    assert f"MLflow run {run}: model_location.distilled_student" in dry
    assert f"competition_package {V4}: manifest model" in dry and UNFINISHED in dry
    assert f"Would remove 3 of 10 versions, freeing {human_bytes(freed)} (dry run" in dry
    assert all(path.is_dir() for path in removed), "a dry run removes nothing"

    assert main(["--keep", "1", "--apply"]) == 0
    applied = capsys.readouterr().out
    assert f"Removed 3 of 10 versions, freeing {human_bytes(freed)}." in applied
    assert not any(path.exists() for path in removed)
    assert sorted(p.name for p in distilled.iterdir()) == [V1, V3]
    assert sorted(p.name for p in compressed.iterdir()) == [V1, V2, V4]
    assert sorted(p.name for p in adapter.iterdir()) == [V2, V3]
    assert len(list(chunks.iterdir())) == 3 and package.is_file()

    assert main(["--keep", "1", "--dataset", "no_such_model"]) == 1
    assert "no versioned model dataset named no_such_model" in capsys.readouterr().err
