"""The project as its users drive it: a real Kedro session with kedro-mlflow, and kedro-viz.

The project is copied to a temporary folder with a `test` configuration environment that swaps
the default models for tiny ones; everything else (catalog, parameters, MLflow store) is the
project's own.
"""

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import mlflow
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory, tiny_tokenizer_dir, tiny_embedder_dir, tiny_llama_dir) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "logs").mkdir()
    shutil.copytree(PROJECT_ROOT / "data" / "01_raw", root / "data" / "01_raw")
    test_env = root / "conf" / "test"
    test_env.mkdir()
    overrides = {
        "chunk_tokenizer": {"type": "fsku_kedro.datasets.TokenizerDataset", "source": str(tiny_tokenizer_dir)},
        "embedder": {"type": "fsku_kedro.datasets.SentenceEmbedderDataset", "source": str(tiny_embedder_dir)},
        "teacher_model": {"type": "fsku_kedro.datasets.PretrainedModelDataset", "source": str(tiny_llama_dir),
                          "name": "tiny-teacher"},
        "student_source": {"type": "fsku_kedro.datasets.PretrainedModelDataset", "source": str(tiny_llama_dir),
                           "name": "tiny"},
    }
    (test_env / "catalog.yml").write_text(yaml.safe_dump(overrides), encoding="utf-8")
    generation = {"max_new_tokens": 6, "do_sample": True, "seed": 0}
    small = {
        "response_generation": {"synthetic_qa": {"max_chunks": 2, "writer": {"max_new_tokens": 8}}},
        "teacher": {"generation": generation},
        "student": {"generation": generation},
        "student_shape": {"layers": 2},
    }
    (test_env / "parameters_response_generation.yml").write_text(yaml.safe_dump(small), encoding="utf-8")
    distillation = {
        "distillation": {
            "lora": {"r": 4, "alpha": 8, "target_modules": "all-linear"},
            "training": {"max_steps": 2, "save_steps": 1, "per_device_train_batch_size": 2},
            "validation": {"max_pairs": 4},
        }
    }
    (test_env / "parameters_distillation.yml").write_text(yaml.safe_dump(distillation), encoding="utf-8")
    inference = {"inference": {"batch_size": 16, "generation": {"max_new_tokens": 4}}}
    (test_env / "parameters_inference.yml").write_text(yaml.safe_dump(inference), encoding="utf-8")
    return root


def _run(project: Path, monkeypatch, pipeline_name: str) -> str:
    monkeypatch.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_name=pipeline_name)
        return session.session_id


def test_kedro_run_versions_artefacts_and_logs_to_mlflow(project_copy, monkeypatch):
    _run(project_copy, monkeypatch, "knowledge_base")
    data = project_copy / "data"
    for artefact in [
        "03_primary/chunks.parquet/*/chunks.parquet",
        "05_model_input/bm25_index/*/bm25_index/fsku_sparse.json",
        "05_model_input/faiss_index/*/faiss_index/index.faiss",
        "08_reporting/retrieval_report.csv/*/retrieval_report.csv",
        "08_reporting/retrieval_plot.png/*/retrieval_plot.png",
        "08_reporting/ingestion_report.csv/*/ingestion_report.csv",
    ]:
        assert len(list(data.glob(artefact))) == 1, artefact

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fsku_kedro")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["knowledge_base.chunking.max_tokens"] == "400"
    assert run.data.params["knowledge_base.bm25.tokenizer"] == "kiwi"
    assert 0.0 <= run.data.metrics["retrieval_metrics.hybrid.recall_at_5"] <= 1.0
    assert run.data.metrics["retrieval_metrics.bm25.recall_at_5"] > 0.5
    assert run.info.status == "FINISHED" and mlflow.active_run() is None, "the run ends with the session"

    # The command users type: a second run adds a version of every artefact and a second MLflow run.
    result = _kedro(project_copy, "run", "--pipelines", "knowledge_base", "--env", "test")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(data.glob("05_model_input/faiss_index/*/faiss_index"))) == 2
    assert len(list(data.glob("03_primary/chunks.parquet/*/chunks.parquet"))) == 2
    assert len(client.search_runs([experiment.experiment_id])) == 2

    # Where the time went: the per-node table is printed, written for scripts and logged to MLflow.
    assert "the pipeline in all" in result.stdout, result.stdout[-2000:]
    times = json.loads((project_copy / "logs" / "node_times.json").read_text(encoding="utf-8"))
    timed = {row["node"] for row in times["nodes"]}
    assert {"knowledge_base.build_faiss_index", "knowledge_base.chunk_documents"} <= timed, timed
    assert all(row["seconds"] >= 0 and not row["failed"] for row in times["nodes"])
    assert times["pipeline_seconds"] >= max(row["seconds"] for row in times["nodes"])
    latest = max(client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time)
    assert "node_seconds.knowledge_base.build_faiss_index" in latest.data.metrics


def _kedro(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kedro", *args], cwd=project, capture_output=True, text=True, timeout=600
    )


def test_response_generation_run_is_versioned_and_resumable(project_copy):
    if not list((project_copy / "data").glob("03_primary/chunks.parquet/*")):
        _kedro(project_copy, "run", "--pipelines", "knowledge_base", "--env", "test")
    result = _kedro(project_copy, "run", "--pipelines", "response_generation", "--env", "test")
    assert result.returncode == 0, result.stderr[-3000:]
    data = project_copy / "data"
    for artefact in [
        "03_primary/synthetic_qa.jsonl/*/synthetic_qa.jsonl",
        "05_model_input/prompt_set.parquet/*/prompt_set.parquet",
        "07_model_output/teacher_responses.jsonl/*/teacher_responses.jsonl",
        "07_model_output/student_responses.jsonl/*/student_responses.jsonl",
        "05_model_input/pair_dataset/*/pair_dataset/dataset_dict.json",
        "08_reporting/pair_report.csv/*/pair_report.csv",
        "08_reporting/synthetic_qa_report.csv/*/synthetic_qa_report.csv",
    ]:
        assert len(list(data.glob(artefact))) == 1, artefact
    progress = data / "07_model_output" / "teacher_responses.progress.jsonl"
    answered = progress.read_text(encoding="utf-8").count("\n")
    assert answered > 0

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fsku_kedro")
    latest = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert latest.data.metrics["pair_metrics.pairs.pairs_train"] >= 1
    assert latest.data.params["teacher.generation.max_new_tokens"] == "6"

    again = _kedro(project_copy, "run", "--pipelines", "response_generation", "--env", "test")
    assert again.returncode == 0, again.stderr[-3000:]
    assert progress.read_text(encoding="utf-8").count("\n") == answered, "a re-run regenerates nothing"


def test_distillation_run_trains_validates_and_logs_every_round(project_copy):
    data = project_copy / "data"
    if not list(data.glob("05_model_input/pair_dataset/*")):
        for name in ("knowledge_base", "response_generation"):
            assert _kedro(project_copy, "run", "--pipelines", name, "--env", "test").returncode == 0
    result = _kedro(project_copy, "run", "--pipelines", "distillation", "--env", "test")
    assert result.returncode == 0, result.stderr[-3000:]
    for artefact in [
        "06_models/distillation/round_1/student_adapter/*/student_adapter/adapter_model.safetensors",
        "06_models/distillation/round_2/distilled_student/*/distilled_student/model.safetensors",
        "06_models/distilled_student/*/distilled_student/config.json",
        "05_model_input/round_2/pair_dataset/*/pair_dataset/dataset_dict.json",
        "08_reporting/round_1/training_curves.png/*/training_curves.png",
        "08_reporting/round_0/validation_report.json/*/validation_report.json",
        "08_reporting/distillation_summary.csv/*/distillation_summary.csv",
    ]:
        assert len(list(data.glob(artefact))) == 1, artefact
    assert list(data.glob("06_models/distillation/checkpoints/round_1/*/checkpoint-2")), "checkpoints for resume"

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fsku_kedro")
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert run.data.tags["losses"] == "seqkd,distillm_v2", "the default: an SFT warm-up, then DistiLLM-2"
    assert run.data.tags["round_1.loss"] == "seqkd" and run.data.tags["round_2.loss"] == "distillm_v2"
    assert run.info.run_name == "distillation | seqkd→distillm_v2 | tiny-depth2"
    assert run.data.tags["input_version.pair_dataset"] != "none", "the run names the pairs version it read"
    experiment_tags = client.get_experiment(experiment.experiment_id).tags
    assert experiment_tags["mlflow.experimentKind"] == "custom_model_development"
    import pandas as pd

    logs = [pd.read_csv(next(data.glob(f"08_reporting/round_{n}/training_log.csv/*/training_log.csv"))) for n in (1, 2)]
    assert [set(log["method"]) for log in logs] == [{"seqkd"}, {"distillm_v2"}], "the right loss per round"
    assert "kl/rejected" not in logs[0].columns or logs[0]["kl/rejected"].isna().all(), "the warm-up is plain NLL"
    assert logs[1]["kl/rejected"].notna().any(), "DistiLLM-2 also trains on the student's responses"
    comparison = pd.read_csv(next(data.glob("08_reporting/distillation_comparison.csv/*/distillation_comparison.csv")))
    assert comparison["losses"].tolist()[-1] == "seqkd→distillm_v2" and comparison["steps"].iloc[-1] == 4
    assert comparison["benchmark_own_mc_accuracy"].isna().all(), "no held-out benchmark in conf/base: left empty"
    losses = client.get_metric_history(run.info.run_id, "round_1.training_history.loss")
    assert [m.step for m in losses] == [1, 2]
    assert client.get_metric_history(run.info.run_id, "round_2.training_history.kl.chosen")
    for round_name in ("round_0", "round_1", "round_2"):
        assert 0.0 <= run.data.metrics[f"{round_name}.validation_metrics.fsku_score"] <= 1.0
    location = Path(run.data.tags["model_location.distilled_student"])
    assert (location / "model.safetensors").is_file(), "the run points at the weights it produced"


def test_inference_run_writes_the_submission_and_its_evaluation(project_copy, tiny_llama_dir):
    import pandas as pd

    from fsku_kedro.questions import parse_question

    data = project_copy / "data"
    if not list(data.glob("05_model_input/faiss_index/*")):
        assert _kedro(project_copy, "run", "--pipelines", "knowledge_base", "--env", "test").returncode == 0
    command = ("run", "--pipelines", "inference", "--env", "test", "--params", f"model_dirs.inference={tiny_llama_dir}")
    result = _kedro(project_copy, *command)
    assert result.returncode == 0, result.stderr[-3000:]
    test = pd.read_csv(project_copy / "data/01_raw/sample/test.csv", dtype=str, encoding="utf-8-sig")
    submission_file = data / "07_model_output" / "submission.csv"
    submission = pd.read_csv(submission_file, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    assert list(submission.columns) == ["ID", "Answer"] and list(submission["ID"]) == list(test["ID"])
    for row, answer in zip(test.itertuples(index=False), submission["Answer"]):
        question = parse_question(row.ID, row.Question)
        assert answer in question.choices if question.choices else answer.strip()
    rows = pd.read_csv(next(data.glob("07_model_output/submission_rows.csv/*/submission_rows.csv")))
    assert {"confidence", "inference_time", "used_fallback", "method", "fallback_reason"} <= set(rows.columns)
    report = pd.read_csv(next(data.glob("08_reporting/evaluation_report.csv/*/evaluation_report.csv")))
    assert report.loc[0, "domain"] == "all" and report.loc[0, "questions"] == len(test)
    assert list(data.glob("08_reporting/evaluation_plot.png/*/evaluation_plot.png"))
    assert list(data.glob("08_reporting/answer_distribution.png/*/answer_distribution.png"))
    assert list(data.glob("04_feature/retrieval_cache.parquet")), "retrieval results are cached"
    answered = (data / "07_model_output" / "answers.progress.jsonl").read_text(encoding="utf-8").count("\n")
    assert answered == len(test)

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fsku_kedro")
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert run.data.metrics["evaluation_metrics.fsku_score"] == pytest.approx(report.loc[0, "fsku_score"])
    benchmark = pd.read_csv(data / "07_model_output" / "fsku_benchmark" / "submission.csv")
    assert benchmark.empty, "no FSKU benchmark files next to this copy: its stage answers nothing"

    again = _kedro(project_copy, *command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (data / "07_model_output" / "answers.progress.jsonl").read_text(encoding="utf-8").count("\n") == answered
    rerun = pd.read_csv(submission_file, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    assert rerun.equals(submission), "a re-run from the progress file gives the same submission"


def test_viz_build_holds_every_pipeline(project_copy, monkeypatch):
    monkeypatch.chdir(project_copy)
    result = _kedro(project_copy, "viz", "build")
    assert result.returncode == 0, result.stderr[-2000:]
    graph = json.loads((project_copy / "build" / "api" / "main").read_text())
    built_nodes = {node["full_name"] for node in graph["nodes"] if node["type"] == "task"}
    assert "response_generation.derive_student" in built_nodes, "the student's derivation is drawn as a node"
    package = PROJECT_ROOT / "src" / "fsku_kedro" / "pipelines"
    names = sorted(p.name for p in package.iterdir() if (p / "pipeline.py").exists())
    assert {p["id"] for p in graph["pipelines"]} == {"__default__", *names}
    stages = set(graph["modular_pipelines"])
    for name in names:  # each pipeline's own graph (the on-request package is not in the default one)
        own = json.loads((project_copy / "build" / "api" / "pipelines" / name).read_text())
        drawn = built_nodes | {node["full_name"] for node in own["nodes"] if node["type"] == "task"}
        stages |= set(own["modular_pipelines"])
        pipeline = importlib.import_module(f"fsku_kedro.pipelines.{name}").create_pipeline()
        assert {f"{name}.{node.name}" for node in pipeline.nodes} <= drawn, name
    assert set(names) <= stages, "every pipeline is one stage"
    assert {"response_generation.teacher", "response_generation.student", "inference.fsku_benchmark"} <= stages


def test_exploration_notebook_runs_on_the_project_artefacts(project_copy, monkeypatch):
    """notebooks/exploration.ipynb executed top to bottom in a Jupyter kernel, after the pipelines it
    reads and a second distillation run with another loss type (so MLflow has a comparison)."""
    import nbformat
    from nbclient import NotebookClient

    data = project_copy / "data"
    for name in ("knowledge_base", "response_generation", "distillation"):
        marker = {"knowledge_base": "05_model_input/faiss_index/*", "response_generation": "05_model_input/pair_dataset/*",
                  "distillation": "06_models/distilled_student/*"}[name]
        if not list(data.glob(marker)):
            assert _kedro(project_copy, "run", "--pipelines", name, "--env", "test").returncode == 0, name
    kd = _kedro(project_copy, "run", "--pipelines", "distillation", "--env", "test", "--params", "distillation.loss=kd")
    assert kd.returncode == 0, kd.stderr[-3000:]
    shutil.copytree(PROJECT_ROOT / "notebooks", project_copy / "notebooks", dirs_exist_ok=True)
    path = project_copy / "notebooks" / "exploration.ipynb"
    notebook = nbformat.read(path, as_version=4)
    monkeypatch.setenv("KEDRO_ENV", "test")
    NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    # Kedro's IPython extension shows a traceback as rich text (display_data), not as an error output.
    errors = [f"cell {i}: {o.get('ename', '')} {o.get('evalue', '')} {o.get('data', {}).get('text/plain', '')[-1500:]}"
              for i, cell in outputs.items() for o in cell
              if o.get("output_type") == "error" or "Traceback" in o.get("data", {}).get("text/plain", "")]
    assert not errors, errors
    last = notebook.cells[-1]["outputs"]
    table = next(o["data"]["text/plain"] for o in last if o.get("output_type") == "execute_result")
    assert "distillm_v2" in table and "kd" in table, "both loss types are compared"
    assert any("image/png" in o.get("data", {}) for o in last), "the comparison is drawn"


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_viz_renders_every_pipeline_in_a_headless_browser(project_copy):
    """The static kedro-viz build served on localhost and opened in headless Chromium: each stage's
    graph draws its nodes. Screenshots are kept in data/08_reporting/kedro_viz/."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not (project_copy / "build" / "index.html").exists():
        assert _kedro(project_copy, "viz", "build").returncode == 0
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(project_copy / "build")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    port = int(re.search(r"port (\d+)", server.stdout.readline()).group(1))
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    screenshots = PROJECT_ROOT / "data" / "08_reporting" / "kedro_viz"
    screenshots.mkdir(parents=True, exist_ok=True)
    try:
        for stage in ("knowledge_base", "response_generation", "distillation", "compression", "inference"):
            driver.get(f"http://127.0.0.1:{port}/?pid={stage}")
            WebDriverWait(driver, 60).until(
                lambda d: stage in [n.text for n in d.find_elements(By.CSS_SELECTOR, ".pipeline-node")]
            )
            labels = [n.text for n in driver.find_elements(By.CSS_SELECTOR, ".pipeline-node")]
            assert len(labels) >= 3, f"{stage}: the stage and its datasets are drawn"
            assert stage in driver.find_element(By.CSS_SELECTOR, ".pipeline-list").text
            driver.save_screenshot(str(screenshots / f"{stage}.png"))
            assert (screenshots / f"{stage}.png").stat().st_size > 10_000
    finally:
        driver.quit()
        server.terminate()


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_mlflow_ui_opens_the_experiment_on_its_runs_table(tmp_path):
    """`mlflow server` on a real sqlite store holding two distillation runs named and tagged as the
    project's hook does; the link the run log prints opens the runs table in headless Chromium."""
    import socket
    import urllib.request

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fsku_kedro.hooks import EXPERIMENT_KIND, run_name, runs_table_url

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store)  # no global MLflow state: earlier tests may hold a run
    experiment = client.create_experiment("fsku_kedro", tags=dict([EXPERIMENT_KIND]))
    names = [run_name(["distillation"], losses, "tiny-student") for losses in (["seqkd", "distillm_v2"], ["kd"])]
    for name in names:
        run = client.create_run(experiment, run_name=name)
        client.log_metric(run.info.run_id, "round_1.validation_metrics.token_kl", 1.5)
        client.set_terminated(run.info.run_id)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    driver = None
    screenshots = PROJECT_ROOT / "data" / "08_reporting" / "mlflow_ui"
    screenshots.mkdir(parents=True, exist_ok=True)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        driver.get(runs_table_url(experiment, f"http://127.0.0.1:{port}"))
        WebDriverWait(driver, 60).until(lambda d: all(name in d.find_element(By.TAG_NAME, "body").text
                                                      for name in names))
        page = driver.find_element(By.TAG_NAME, "body").text
        assert "Run Name" in page and "2 matching runs" in page, page[:500]
        assert f"/experiments/{experiment}/runs" in driver.current_url
        driver.save_screenshot(str(screenshots / "runs_table.png"))
        assert (screenshots / "runs_table.png").stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)


def test_airflow_dag_has_one_task_per_stage_in_dependency_order(project_copy):
    result = _kedro(project_copy, "airflow", "create", "--group-by", "namespace", "--target-dir", "dags")
    assert result.returncode == 0, result.stderr[-2000:]
    dag = (project_copy / "dags" / "fsku_kedro_dag.py").read_text(encoding="utf-8")
    tasks = re.findall(r'@task\(task_id="([^"]+)"\)', dag)
    stages = ["knowledge-base", "response-generation", "distillation", "compression", "inference"]
    assert sorted(tasks) == sorted(stages), "one Airflow task per pipeline stage"
    edges = set(re.findall(r'tasks\["([^"]+)"\] >> tasks\["([^"]+)"\]', dag))
    for upstream, downstream in zip(stages, stages[1:]):
        assert (upstream, downstream) in edges, f"{upstream} runs before {downstream}"
    order = {stage: i for i, stage in enumerate(stages)}
    assert all(order[a] < order[b] for a, b in edges), "no edge runs against the stage order"
    for stage in ("knowledge_base", "inference"):
        assert f'namespaces=["{stage}"]' in dag, "each task runs its stage's namespace"
    gpu_only = _kedro(project_copy, "airflow", "create", "--group-by", "namespace", "--tags", "gpu",
                      "--target-dir", "dags_gpu")
    assert gpu_only.returncode == 0, gpu_only.stderr[-2000:]
    gpu_tasks = re.findall(r'@task\(task_id="([^"]+)"\)', (project_copy / "dags_gpu" / "fsku_kedro_dag.py").read_text())
    assert sorted(gpu_tasks) == sorted(stages[1:]), "the GPU stages are tagged gpu"


def _mlflow_runs(project: Path) -> int:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fsku_kedro")
    return len(client.search_runs([experiment.experiment_id])) if experiment else 0


@pytest.mark.parametrize(("pipeline_name", "typo", "hint"), [
    ("knowledge_base", {"knowledge_base": {"chunking": {"max_token": 100}}}, "max_tokens"),
    ("response_generation", {"teacher": {"generation": {"max_new_token": 8}}}, "max_new_tokens"),
    ("distillation", {"distillation": {"keep_base_if_beter": False}}, "keep_base_if_better"),
    ("compression", {"compression": {"gptq": {"group_sise": 32}}}, "group_size"),
    ("inference", {"inference": {"max_context_char": 100}}, "max_context_chars"),
])
def test_a_misspelt_setting_stops_each_pipeline_before_its_first_node(project_copy, monkeypatch, pipeline_name, typo,
                                                                      hint):
    from fsku_kedro.parameters import SettingsError

    monkeypatch.chdir(project_copy)
    bootstrap_project(project_copy)
    before = _mlflow_runs(project_copy)
    with KedroSession.create(project_path=project_copy, env="test", runtime_params=typo) as session:
        with pytest.raises(SettingsError, match=f"unknown key \\(set in --params\\). Did you mean '{hint}'"):
            session.run(pipeline_names=[pipeline_name])
    assert _mlflow_runs(project_copy) == before, "nothing ran: not even the MLflow run started"


def test_an_unknown_loss_in_the_schedule_stops_the_run_before_its_first_node(project_copy, monkeypatch):
    from fsku_kedro.parameters import SettingsError

    monkeypatch.chdir(project_copy)
    bootstrap_project(project_copy)
    before = _mlflow_runs(project_copy)
    schedule = {"distillation": {"schedule": "seqkd distilm_v2"}}
    with KedroSession.create(project_path=project_copy, env="test", runtime_params=schedule) as session:
        with pytest.raises(SettingsError, match=r"distillation.schedule.1.loss: Input should be 'distillm_v2'"):
            session.run(pipeline_names=["distillation"])
    assert _mlflow_runs(project_copy) == before, "nothing ran: not even the MLflow run started"


def test_errors_about_user_input_are_the_last_thing_on_screen(project_copy, tiny_llama_dir):
    """The command line prints a settings or data error alone, without a traceback; the log file keeps it."""
    typo = _kedro(project_copy, "run", "--pipelines", "inference", "--env", "test",
                  "--params", "inference.generation.max_new_token=8")
    assert typo.returncode == 1
    tail = typo.stderr.strip().splitlines()
    assert tail[-1] == "(the traceback is in logs/fsku_kedro.log)"
    assert any("inference.generation.max_new_token: unknown key (set in --params)" in line for line in tail[-4:])
    assert "Traceback" not in typo.stderr and "Traceback" not in typo.stdout
    assert "Traceback" in (project_copy / "logs" / "fsku_kedro.log").read_text(encoding="utf-8")

    # A test.csv with a duplicate ID and an empty question: the rows are listed, nothing else.
    broken = project_copy / "conf" / "broken_csv"
    shutil.copytree(project_copy / "conf" / "test", broken, dirs_exist_ok=True)
    bad_csv = project_copy / "data" / "01_raw" / "bad_test.csv"
    bad_csv.write_text("ID,Question\nA1,첫 문제\nA1,둘째 문제\nA3,\n", encoding="utf-8")
    catalog = yaml.safe_load((broken / "catalog.yml").read_text())
    catalog["test_questions"] = {"type": "fsku_kedro.datasets.QuestionsDataset", "filepath": str(bad_csv)}
    (broken / "catalog.yml").write_text(yaml.safe_dump(catalog), encoding="utf-8")
    data_error = _kedro(project_copy, "run", "--pipelines", "inference", "--env", "broken_csv",
                        "--params", f"model_dirs.inference={tiny_llama_dir}")
    assert data_error.returncode == 1
    tail = data_error.stderr.strip().splitlines()[-6:]
    assert tail[-1] == "(the traceback is in logs/fsku_kedro.log)"
    shown = "\n".join(tail)
    assert "row 4 (ID A3): empty question" in shown and "duplicate ID A1 in rows 2, 3" in shown
    assert "Traceback" not in data_error.stderr


def test_model_dirs_only_work_from_the_command_line(project_copy, monkeypatch, tiny_llama_dir):
    from fsku_kedro.parameters import SettingsError

    monkeypatch.chdir(project_copy)
    bootstrap_project(project_copy)
    env = project_copy / "conf" / "model_dirs_in_file"
    env.mkdir(exist_ok=True)
    (env / "parameters.yml").write_text(yaml.safe_dump({"model_dirs": {"inference": str(tiny_llama_dir)}}))
    with KedroSession.create(project_path=project_copy, env="model_dirs_in_file") as session:
        with pytest.raises(SettingsError, match="model_dirs only works with --params"):
            session.run(pipeline_names=["inference"])


def test_each_setting_is_validated_once_and_reaches_its_node_as_the_model(project_copy, monkeypatch):
    """The project's resolver validates (its messages name the file and the nearest key); Kedro's
    typed-parameter step receives the models and passes them through, so no block is validated twice."""
    from kedro.framework.project import pipelines

    from fsku_kedro.parameters.distillation import DistillationSettings
    from fsku_kedro.parameters.generation import RoleGenerationSettings

    monkeypatch.chdir(project_copy)
    bootstrap_project(project_copy)
    dict(pipelines)  # the graph is built (it reads distillation.rounds of the files) before counting
    validated = []
    original = DistillationSettings.model_validate.__func__

    def counting(cls, value, *args, **kwargs):
        if isinstance(value, dict):
            validated.append(value)
        return original(cls, value, *args, **kwargs)

    monkeypatch.setattr(DistillationSettings, "model_validate", classmethod(counting))
    with KedroSession.create(project_path=project_copy, env="test") as session:
        catalog = session.load_context().catalog
        settings = catalog.load("params:distillation")
        generation = catalog.load("params:student.generation")
    assert isinstance(settings, DistillationSettings) and settings.training.max_steps == 2
    assert isinstance(generation, RoleGenerationSettings) and generation.max_new_tokens == 6
    assert len(validated) == 1


def test_a_session_reads_its_environments_catalog_after_the_graph_is_built(project_copy, monkeypatch):
    """Building the graph reads the configuration with a loader of its own; the session's catalog still
    resolves ${globals:...} and ${runtime_params:...} with the session's environment and parameters."""
    elsewhere = project_copy / "conf" / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "globals.yml").write_text("outputs: data/elsewhere\n")
    monkeypatch.chdir(project_copy)
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    bootstrap_project(project_copy)
    (project_copy / "some_model").mkdir(exist_ok=True)
    (project_copy / "some_model" / "config.json").write_text("{}")
    runtime = {"model_dirs": {"compression": str(project_copy / "some_model")}}
    with KedroSession.create(project_path=project_copy, env="elsewhere", runtime_params=runtime) as session:
        catalog = session.load_context().catalog
    assert "data/elsewhere/03_primary" in str(catalog.get("chunks")._filepath)
    assert str(catalog.get("distilled_student@path")._filepath).endswith("some_model")


def _chunks(project: Path) -> None:
    if not list((project / "data").glob("03_primary/chunks.parquet/*")):
        assert _kedro(project, "run", "--pipelines", "knowledge_base", "--env", "test").returncode == 0


def test_the_student_is_derived_by_a_node_in_the_shape_of_the_run(project_copy, monkeypatch):
    """derive_student cuts the student source to student_shape (here from the command line: 3 layers of
    highest block influence and 64 MLP channels, measured on the knowledge base's chunks) into a
    versioned model directory, timed like every node; the source is left whole."""
    _chunks(project_copy)
    monkeypatch.chdir(project_copy)
    bootstrap_project(project_copy)
    shape = {"student_shape": {"layers": 3, "layer_selection": "block_influence", "mlp_channels": 64}}
    with KedroSession.create(project_path=project_copy, env="test", runtime_params=shape) as session:
        session.run(node_names=["response_generation.derive_student"])
    saved = sorted(project_copy.glob("data/06_models/student_model/*/student_model/config.json"))
    config = json.loads(saved[-1].read_text())
    assert (config["num_hidden_layers"], config["intermediate_size"]) == (3, 64)
    assert json.loads((saved[-1].parent / "fsku_model.json").read_text())["name"] == "tiny-bi3-mlp64"
    times = json.loads((project_copy / "logs" / "node_times.json").read_text())
    assert "response_generation.derive_student" in json.dumps(times)
    with KedroSession.create(project_path=project_copy, env="test") as session:
        source = session.load_context().catalog.load("student_source")
    assert (source.model.config.num_hidden_layers, source.model.config.intermediate_size) == (4, 128)


def test_rounds_follow_the_command_line_and_the_environment(project_copy, monkeypatch):
    """`kedro run --params distillation.rounds=3` trains three rounds and an environment with rounds: 1
    trains one, each round its own stage with its own artefacts and MLflow keys (the kedro command exports
    its --env and --params before Kedro builds the graph). A session made in Python cannot reshape the
    graph it gets: it is refused before any node runs, with the way through."""
    data = project_copy / "data"
    if not list(data.glob("05_model_input/pair_dataset/*")):
        for name in ("knowledge_base", "response_generation"):
            assert _kedro(project_copy, "run", "--pipelines", name, "--env", "test").returncode == 0
    three = _kedro(project_copy, "run", "--pipelines", "distillation", "--env", "test",
                   "--params", "distillation.rounds=3")
    assert three.returncode == 0, three.stderr[-3000:]
    assert list(data.glob("06_models/distillation/round_3/distilled_student/*/distilled_student/model.safetensors"))
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fsku_kedro")
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert {f"round_{n}.validation_metrics.fsku_score" for n in range(4)} <= set(run.data.metrics)
    assert run.data.params["distillation.rounds"] == "3"

    one_round = project_copy / "conf" / "one_round"
    shutil.copytree(project_copy / "conf" / "test", one_round, dirs_exist_ok=True)
    settings = yaml.safe_load((one_round / "parameters_distillation.yml").read_text())
    settings["distillation"]["rounds"] = 1
    (one_round / "parameters_distillation.yml").write_text(yaml.safe_dump(settings))
    one = _kedro(project_copy, "run", "--pipelines", "distillation", "--env", "one_round")
    assert one.returncode == 0, one.stderr[-3000:]
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert "round_1.validation_metrics.fsku_score" in run.data.metrics
    assert not any(key.startswith("round_2.") for key in run.data.metrics), "one round, from the environment"
    summaries = sorted(data.glob("08_reporting/distillation_summary.csv/*/distillation_summary.csv"))
    import pandas as pd

    assert pd.read_csv(summaries[-1])["round"].tolist() == [0, 1]

    from fsku_kedro.parameters import SettingsError

    monkeypatch.chdir(project_copy)
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    bootstrap_project(project_copy)
    runtime = {"distillation": {"rounds": 3}}
    with KedroSession.create(project_path=project_copy, env="test", runtime_params=runtime) as session:
        with pytest.raises(SettingsError, match=r"distillation has 3 round\(s\) \(set in --params\) but the graph "
                                                r"holds 2.*kedro run --env test"):
            session.run(pipeline_names=["distillation"])


def test_the_package_replays_its_submission_offline_and_refuses_tampering(project_copy, tiny_llama_dir, tmp_path):
    """Build the package after an inference run, unpack it into an empty folder and answer test.csv
    there with the project's source out of reach and the hub offline: the same bytes as the packaged
    submission; a changed or missing file is refused by name."""
    data = project_copy / "data"
    if not list(data.glob("05_model_input/faiss_index/*")):
        assert _kedro(project_copy, "run", "--pipelines", "knowledge_base", "--env", "test").returncode == 0
    served = ("--params", f"model_dirs.inference={tiny_llama_dir}")
    assert _kedro(project_copy, "run", "--pipelines", "inference", "--env", "test", *served).returncode == 0
    staged = set(Path(tempfile.gettempdir()).glob("fsku-package-*"))
    built = _kedro(project_copy, "run", "--pipelines", "package", "--env", "test", *served)
    assert built.returncode == 0, built.stderr[-3000:]
    assert set(Path(tempfile.gettempdir()).glob("fsku-package-*")) == staged, "the staging folder was archived and removed"
    archive = next(data.glob("09_package/competition_package.zip/*/competition_package.zip"))
    replay = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as packed:
        packed.extractall(replay)
    manifest = json.loads((replay / "manifest.json").read_text(encoding="utf-8"))
    assert {"answer.py", "submission.csv", "settings.json", "requirements.lock", "knowledge/chunks.parquet",
            "model/config.json", "embedder/fsku_embedder.json"} <= set(manifest["files"])
    assert any(name.startswith("wheel/fsku_kedro-") for name in manifest["files"])
    assert manifest["git_commit"] and manifest["seconds_per_question"] > 0
    assert {"chunks", "bm25_index", "faiss_index", "submission_rows"} <= set(manifest["input_versions"])
    assert [check["name"] for check in manifest["limit_checks"]] == ["GPU memory", "time"]

    test_csv = tmp_path / "test.csv"
    shutil.copy(project_copy / "data/01_raw/sample/test.csv", test_csv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    run = lambda: subprocess.run([sys.executable, "answer.py", str(test_csv), "--out", str(tmp_path / "out.csv"),  # noqa: E731
                                  "--work", str(tmp_path / "work")], cwd=replay, env=env, capture_output=True,
                                 text=True, timeout=600)
    answered = run()
    assert answered.returncode == 0, answered.stderr[-3000:]
    assert f"fsku_kedro from {replay / 'wheel'}" in answered.stderr, "the packaged wheel answers, not the checkout"
    assert (tmp_path / "out.csv").read_bytes() == (replay / "submission.csv").read_bytes()
    # The same bytes could also come from two runs that fell back alike: the packaged model answered.
    import pandas as pd

    served = pd.read_csv(max(data.glob("07_model_output/submission_rows.csv/*/submission_rows.csv")))
    replayed = pd.read_csv(tmp_path / "out.rows.csv")
    assert replayed["method"].tolist() == served["method"].tolist()
    assert replayed["used_fallback"].sum() == served["used_fallback"].sum()
    assert (replayed["method"] == "choice_scoring").any(), "the packaged model scored options itself"

    (replay / "prompts" / "inference_multiple_choice.txt").write_text("다른 프롬프트 $question", encoding="utf-8")
    (replay / "knowledge" / "chunks.parquet").unlink()
    refused = run()
    assert refused.returncode == 3
    assert "prompts/inference_multiple_choice.txt: changed" in refused.stderr
    assert "knowledge/chunks.parquet: missing" in refused.stderr


def test_a_model_missing_offline_stops_the_run_with_the_command_that_fetches_it(project_copy, monkeypatch):
    from fsku_kedro.parameters import SettingsError

    monkeypatch.chdir(project_copy)
    bootstrap_project(project_copy)
    env = project_copy / "conf" / "missing_model"
    shutil.copytree(project_copy / "conf" / "test", env, dirs_exist_ok=True)
    catalog = yaml.safe_load((env / "catalog.yml").read_text())
    catalog["teacher_model"] = {"type": "fsku_kedro.datasets.PretrainedModelDataset",
                                "source": "fsku-test/no-such-model-7b", "name": "missing"}
    (env / "catalog.yml").write_text(yaml.safe_dump(catalog))
    before = _mlflow_runs(project_copy)
    with KedroSession.create(project_path=project_copy, env="missing_model") as session:
        with pytest.raises(SettingsError) as refusal:
            session.run(pipeline_names=["response_generation"])
    message = str(refusal.value)
    assert message.startswith("models this run needs are not available offline")
    assert ("teacher_model: fsku-test/no-such-model-7b is not in the Hugging Face cache; fetch it once while online "
            "with: hf download fsku-test/no-such-model-7b") in message
    assert "student_model" not in message, "only the missing one is listed"
    assert _mlflow_runs(project_copy) == before, "refused before the run started"


def test_relative_sqlite_tracking_uri_is_anchored_at_the_project_root(tmp_path):
    """conf/base/mlflow.yml's sqlite:///mlflow.db names the project's store from any working directory."""
    from fsku_kedro.hooks import anchored_tracking_uri

    assert anchored_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    assert anchored_tracking_uri(f"sqlite:///{tmp_path}/x.db", "/elsewhere") == f"sqlite:///{tmp_path}/x.db"
    assert anchored_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    assert anchored_tracking_uri(None, tmp_path) is None
