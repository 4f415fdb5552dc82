"""The CLI hook that exports a command's environment and runtime parameters before Kedro builds the
pipelines."""

import json
import os

import pytest
import yaml

from fsku_kedro.cli_hooks import cli_hooks, command_env, command_params
from fsku_kedro.run_params import RUN_PARAMS, exported_run_params


@pytest.mark.parametrize(("args", "env"), [
    (["run", "--env", "qwen_coder_cpu", "--pipelines", "distillation"], "qwen_coder_cpu"),
    (["run", "--env=gpu"], "gpu"),
    (["viz", "run", "-e", "test"], "test"),
    (["run", "-etest", "--env", "gpu"], "gpu"),
    (["run", "--pipelines", "inference"], None),
    (["run", "--env"], None),
    (["run", "--", "--env", "x"], None),
])
def test_the_env_option_is_read_in_clicks_spellings(args, env):
    assert command_env(args) == env


def test_params_and_a_config_file_give_the_runtime_parameters(tmp_path):
    config = tmp_path / "arm.yml"
    config.write_text(yaml.safe_dump({"run": {"env": "qwen_coder_cpu", "params": {
        "student_shape": {"layers": 22}, "distillation": {"schedule": "choice_target"}}}}))
    args = ["run", "--config", str(config), "--params", "distillation.rounds=3,student_shape.mlp_channels=6400"]
    assert command_env(args) == "qwen_coder_cpu"
    assert command_params(args) == {"student_shape": {"layers": 22, "mlp_channels": 6400},
                                    "distillation": {"schedule": "choice_target", "rounds": 3}}
    assert command_params(["run", "--params=distillation.schedule=seqkd distillm_v2"]) == {
        "distillation": {"schedule": "seqkd distillm_v2"}}
    assert command_params(["run"]) == {}


def test_the_hook_exports_them_and_clears_stale_ones(monkeypatch):
    monkeypatch.setenv("KEDRO_ENV", "before")
    monkeypatch.setenv(RUN_PARAMS, json.dumps({"distillation": {"rounds": 3}}))
    cli_hooks.before_command_run(project_metadata=None, command_args=["run", "--pipelines", "inference"])
    assert os.environ["KEDRO_ENV"] == "before" and exported_run_params() == {}
    cli_hooks.before_command_run(project_metadata=None,
                                 command_args=["run", "--env", "one_round", "--params", "distillation.rounds=1"])
    assert os.environ["KEDRO_ENV"] == "one_round"
    assert exported_run_params() == {"distillation": {"rounds": 1}}
