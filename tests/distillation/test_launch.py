"""The distillation node training under `accelerate launch`: one node run, the same adapter as in
process, and live step metrics in the Kedro run's MLflow run."""

import mlflow
import pytest
import torch
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from datasets import Dataset, DatasetDict

from fsku_kedro.datasets import ModelDirectoryDataset
from fsku_kedro.distillation.choice_targets import target_frame
from fsku_kedro.distillation.launch import launch_command
from fsku_kedro.parameters.distillation import (
    DistillationSettings,
    LauncherSettings,
    LoraSettings,
    TrainingSettings,
)
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
    # auto: both paths load the saved models in the auto dtype and train in it
    base = training_parameters(max_steps=2, bf16="auto")
    no_targets = target_frame([])
    in_process, history, _ = train_student(pairs, no_targets, bundles["teacher"], bundles["student"],
                                           base.model_copy(update={"checkpoint_dir": str(tmp_path / "a")}))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        launched, launched_history, log = train_student(
            pairs, no_targets, bundles["teacher"], bundles["student"],
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


def _launcher(tmp_path, **config) -> LauncherSettings:
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump({"compute_environment": "LOCAL_MACHINE", "num_processes": 2,
                                    "mixed_precision": "bf16", **config}))
    return LauncherSettings(type="accelerate", config_file=str(path))


def test_the_shipped_configs_pass_on_eight_gpus_and_are_refused_without_them():
    from fsku_kedro.distillation.launch import launch_problems

    for config in ("conf/accelerate/fsdp.yaml", "conf/accelerate/deepspeed_zero3.yaml"):
        settings = DistillationSettings(launcher=LauncherSettings(type="accelerate",
                                                                  config_file=str(PROJECT_ROOT / config)))
        problems = launch_problems(settings, device_count=0)
        assert any("8 processes need as many CUDA GPUs; 0 visible" in p for p in problems), problems
    fsdp = DistillationSettings(launcher=LauncherSettings(type="accelerate",
                                                          config_file=str(PROJECT_ROOT / "conf/accelerate/fsdp.yaml")))
    assert launch_problems(fsdp, device_count=8) == []
    assert launch_problems(DistillationSettings(), device_count=0) == [], "in-process training is not checked"


def test_combinations_the_launcher_cannot_run_are_refused(tmp_path):
    from fsku_kedro.distillation.launch import launch_problems

    def problems(config, **settings):
        launcher = _launcher(tmp_path, **config)
        return launch_problems(DistillationSettings(launcher=launcher, **settings), device_count=8)

    zero3 = {"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero_stage": 3, "gradient_accumulation_steps": 4}}
    found = problems(zero3, lora=LoraSettings(target_modules=["q_proj", "lm_head"]), qlora=True)
    assert any(p.startswith(f"{tmp_path / 'accelerate.yaml'}: DeepSpeed is not installed") for p in found)
    assert any("trains the LM head" in p for p in found)
    assert any("ZeRO-3 cannot partition it" in p for p in found)
    assert any("gradient_accumulation_steps 4 differs" in p for p in found)
    # The same LoRA under DPO alone reads no heads in the chunked loss: only the other problems remain.
    dpo = problems(zero3, loss="dpo", lora=LoraSettings(target_modules=["q_proj", "lm_head"]))
    assert not any("trains the LM head" in p for p in dpo)

    fsdp1 = problems({"distributed_type": "FSDP", "fsdp_config": {"fsdp_version": 1}}, qlora=True,
                     training=TrainingSettings(bf16=False))
    assert any("fsdp_version 1" in p for p in fsdp1)
    assert any("FSDP cannot shard it" in p for p in fsdp1)
    assert any("mixed_precision bf16 while distillation.training.bf16 is false" in p for p in fsdp1)

    missing = LauncherSettings(type="accelerate", config_file=str(tmp_path / "nope.yaml"))
    assert launch_problems(DistillationSettings(launcher=missing)) == [
        f"distillation.launcher.config_file: {tmp_path / 'nope.yaml'} does not exist"]


def test_a_refused_launch_stops_the_node_before_it_writes_anything(teacher, student, tmp_path):
    from fsku_kedro.errors import UserInputError

    launcher = _launcher(tmp_path, distributed_type="FSDP", fsdp_config={"fsdp_version": 1})
    settings = training_parameters().model_copy(update={"launcher": launcher,
                                                        "checkpoint_dir": str(tmp_path / "checkpoints")})
    with pytest.raises(UserInputError, match="fsdp_version 1"):
        train_student(DatasetDict({"train": Dataset.from_list(pair_rows(2))}), target_frame([]), teacher, student,
                      settings)
    assert not (tmp_path / "checkpoints").exists()
