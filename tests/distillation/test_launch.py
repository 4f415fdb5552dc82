"""The distillation node training under `accelerate launch`: one node run, the same adapter as in
process, and live step metrics in the Kedro run's MLflow run."""

import mlflow
import pytest
import torch
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from datasets import Dataset, DatasetDict

from fsku_kedro.datasets import ModelDirectoryDataset
from fsku_kedro.distillation.launch import launch_command
from fsku_kedro.parameters.distillation import LauncherSettings
from fsku_kedro.pipelines.distillation.nodes import train_student
from tests.conftest import PROJECT_ROOT
from tests.distillation.conftest import pair_rows, training_parameters

pytestmark = pytest.mark.slow


def test_shipped_accelerate_configs_describe_zero3_and_fsdp():
    zero3 = load_config_from_file(str(PROJECT_ROOT / "conf/accelerate/deepspeed_zero3.yaml"))
    assert zero3.distributed_type == "DEEPSPEED" and zero3.deepspeed_config["zero_stage"] == 3
    fsdp = load_config_from_file(str(PROJECT_ROOT / "conf/accelerate/fsdp.yaml"))
    assert fsdp.distributed_type == "FSDP" and fsdp.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    command = launch_command(LauncherSettings(config_file="conf/accelerate/fsdp.yaml", num_processes=4),
                             PROJECT_ROOT / "s.json")
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[-4:] == ["-m", "fsku_kedro.distillation.launch", "--spec", str(PROJECT_ROOT / "s.json")]
    assert ["--num_processes", "4"] == command[command.index("--num_processes"):command.index("--num_processes") + 2]


def test_launched_training_matches_in_process_and_logs_to_the_run(teacher, student, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bundles = {}
    for role, bundle in (("teacher", teacher), ("student", student)):
        store = ModelDirectoryDataset(str(tmp_path / role))
        store.save(bundle)
        bundles[role] = store.load()
    pairs = DatasetDict({"train": Dataset.from_list(pair_rows(4))})
    config = tmp_path / "cpu.yaml"
    config.write_text(yaml.safe_dump({"compute_environment": "LOCAL_MACHINE", "distributed_type": "NO",
                                      "use_cpu": True, "num_processes": 1, "mixed_precision": "no",
                                      "num_machines": 1, "machine_rank": 0}))
    base = training_parameters(max_steps=2)
    in_process, history, _ = train_student(pairs, bundles["teacher"], bundles["student"],
                                           base.model_copy(update={"checkpoint_dir": str(tmp_path / "a")}))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        launched, launched_history, log = train_student(
            pairs, bundles["teacher"], bundles["student"],
            base.model_copy(update={"checkpoint_dir": str(tmp_path / "b"), "launcher": LauncherSettings(
                type="accelerate", config_file=str(config), num_processes=1)}),
        )
    assert launched.weights.keys() == in_process.weights.keys()
    for key in in_process.weights:
        torch.testing.assert_close(launched.weights[key], in_process.weights[key], atol=1e-5, rtol=1e-4)
    assert [p["step"] for p in launched_history["loss"]] == [1, 2] == [p["step"] for p in history["loss"]]
    assert list(log["step"].dropna().astype(int).unique())[:2] == [1, 2]
    live = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in live] == [1, 2], "rank 0 logged each step into the Kedro run"
    with pytest.raises(ValueError, match="type"):
        LauncherSettings(type="slurm")
