"""Typed settings: every shipped environment validates, and a bad value is refused with a message
that names the key, where it was set, the allowed keys and the nearest one."""

from pathlib import Path

import pytest
import yaml

from fsku_kedro.parameters import ROOTS, SettingsError, resolve_parameters
from fsku_kedro.parameters.distillation import DistillationSettings
from fsku_kedro.parameters.sources import ParameterSources
from tests.conftest import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"
ENVIRONMENTS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and list(p.glob("parameters*.yml")))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_shipped_environment_validates(env):
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(str(CONF), base_env="base", default_run_env=env, env=env,
                               merge_strategy={"parameters": "soft"})
    resolved = resolve_parameters(loader["parameters"], ParameterSources(CONF, "base", env, None))
    assert set(resolved) == set(ROOTS)
    assert DistillationSettings.model_validate(resolved["distillation"]).rounds >= 1


def test_environments_are_found():
    assert {"base", "gpu"} <= set(ENVIRONMENTS)


def _conf(tmp_path: Path, base: dict, env: dict | None = None) -> Path:
    for name, content in (("base", base), ("exp", env)):
        (tmp_path / "conf" / name).mkdir(parents=True)
        if content is not None:
            (tmp_path / "conf" / name / "parameters_x.yml").write_text(yaml.safe_dump(content), encoding="utf-8")
    return tmp_path / "conf"


def _problems(tmp_path, base, env=None, runtime=None) -> str:
    from kedro.config import OmegaConfigLoader

    conf = _conf(tmp_path, base, env)
    loader = OmegaConfigLoader(str(conf), base_env="base", default_run_env="exp", env="exp", runtime_params=runtime,
                               merge_strategy={"parameters": "soft"})
    with pytest.raises(SettingsError) as error:
        resolve_parameters(loader["parameters"], ParameterSources(conf, "base", "exp", runtime))
    return str(error.value)


def test_a_misspelt_key_names_its_file_the_nearest_key_and_the_allowed_ones(tmp_path):
    message = _problems(tmp_path, {"distillation": {"rounds": 2}}, {"distillation": {"keep_base_if_beter": False}})
    assert "distillation.keep_base_if_beter: unknown key (set in conf/exp/parameters_x.yml)" in message
    assert "Did you mean 'keep_base_if_better'?" in message
    assert "Allowed keys under distillation: " in message and "checkpoint_dir" in message


def test_wrong_types_and_out_of_range_values_are_refused(tmp_path):
    message = _problems(tmp_path, {"distillation": {"rounds": "three", "distillm": {"alpha_teacher": 1.5}},
                                   "compression": {"methods": ["awq"]}})
    assert "distillation.rounds: Input should be a valid integer" in message and "(got 'three')" in message
    assert "distillation.distillm.alpha_teacher: Input should be less than 1" in message
    assert "compression.methods.0: Input should be 'gptq', 'nf4', 'int8' or 'int8_dynamic'" in message
    assert message.startswith("3 problem(s)")


def test_runtime_parameters_are_checked_the_same_way(tmp_path):
    message = _problems(tmp_path, {"inference": {}}, runtime={"inference": {"generation": {"max_new_token": 8}}})
    assert "inference.generation.max_new_token: unknown key (set in --params). Did you mean 'max_new_tokens'?" in message


def test_trainer_fields_are_checked_against_trl(tmp_path):
    message = _problems(tmp_path, {"distillation": {"training": {"learnig_rate": 1e-4, "weight_decay": 0.1}}})
    assert "unknown key 'learnig_rate', not a field of DPOConfig. Did you mean 'learning_rate'?" in message
    assert "weight_decay" not in message, "any real DPOConfig field is accepted"


def test_an_unknown_block_is_refused(tmp_path):
    message = _problems(tmp_path, {"distilation": {"rounds": 3}})
    assert "distilation: unknown parameters block (set in conf/base/parameters_x.yml). Did you mean 'distillation'?" in message


def test_defaults_live_in_the_models_only():
    """conf/base sets no value a settings model already holds as its default."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(str(CONF), base_env="base", default_run_env="base", env="base")
    raw = loader["parameters"]
    defaults = {name: model().model_dump() for name, model in ROOTS.items()}

    def repeated(given, default, path):
        if isinstance(given, dict):
            return [hit for key, value in given.items() for hit in repeated(value, default.get(key), f"{path}.{key}")]
        return [path] if given == default else []

    assert [hit for name, value in raw.items() for hit in repeated(value, defaults[name], name)] == []
