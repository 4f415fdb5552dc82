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


def _resolved(env: str, runtime: dict | None = None) -> dict:
    """The shipped environment's parameters with ``runtime`` (as `kedro run --params` gives them) on top."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(str(CONF), base_env="base", default_run_env=env, env=env, runtime_params=runtime,
                               merge_strategy={"parameters": "soft"})
    return resolve_parameters(loader["parameters"], ParameterSources(loader, env, runtime))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_shipped_environment_validates(env):
    resolved = _resolved(env)
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
        resolve_parameters(loader["parameters"], ParameterSources(loader, "exp", runtime))
    return str(error.value)


def test_a_misspelt_key_names_its_file_the_nearest_key_and_the_allowed_ones(tmp_path):
    message = _problems(tmp_path, {"distillation": {"rounds": 2}}, {"distillation": {"keep_base_if_beter": False}})
    assert "distillation.keep_base_if_beter: unknown key (set in conf/exp/parameters_x.yml)" in message
    assert "Did you mean 'keep_base_if_better'?" in message
    assert "Allowed keys under distillation: " in message and "checkpoint_dir" in message


def test_the_sources_of_a_key_are_the_files_that_set_it_beside_runtime_parameters(tmp_path):
    """The loader merges --params into every parameters file it reads; the attribution does not."""
    from kedro.config import OmegaConfigLoader

    conf = _conf(tmp_path, {"distillation": {"rounds": 2}}, {"inference": {"batch_size": 4}})
    runtime = {"distillation": {"rounds": 3}}
    loader = OmegaConfigLoader(str(conf), base_env="base", default_run_env="exp", env="exp", runtime_params=runtime)
    sources = ParameterSources(loader, "exp", runtime)
    assert sources.setting(("distillation", "rounds")) == [str(Path("conf/base/parameters_x.yml")), "--params"]
    assert sources.setting(("inference", "batch_size")) == [str(Path("conf/exp/parameters_x.yml"))]


def test_wrong_types_and_out_of_range_values_are_refused(tmp_path):
    message = _problems(tmp_path, {"distillation": {"rounds": "three", "distillm": {"alpha_teacher": 1.5}},
                                   "compression": {"methods": ["hqq"]}})
    assert "distillation.rounds: Input should be a valid integer" in message and "(got 'three')" in message
    assert "distillation.distillm.alpha_teacher: Input should be less than 1" in message
    assert "compression.methods.0: Input should be 'gptq', 'awq', 'nf4', 'int8' or 'int8_dynamic'" in message
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


def test_the_schedule_sets_the_rounds_and_each_round_its_loss_and_overrides():
    default = DistillationSettings()
    assert default.losses == ["seqkd", "distillm_v2"] and default.rounds == 2, "an SFT warm-up, then DistiLLM-2"
    assert DistillationSettings(rounds=3).losses == ["seqkd", "distillm_v2", "distillm_v2"]
    assert DistillationSettings(loss="kd", rounds=1).losses == ["kd"]
    settings = DistillationSettings.model_validate({"schedule": [
        {"loss": "seqkd", "training": {"learning_rate": 1e-4}},
        {"loss": "distillm_v2", "distillm": {"beta": 0.5, "adaptive_alpha": True}}]})
    first, second = settings.for_round(1), settings.for_round(2)
    assert first.losses == ["seqkd"] and first.training.learning_rate == 1e-4 and first.distillm.beta == 1.0
    assert second.losses == ["distillm_v2"] and second.distillm.beta == 0.5 and second.distillm.adaptive_alpha
    assert second.training.learning_rate == settings.training.learning_rate, "overrides hold for their round only"


def test_the_schedule_from_the_command_line(tmp_path):
    """Kedro splits --params at every comma: a schedule comes as space-separated loss names, or as
    entries keyed by position (which can carry a round's overrides)."""
    import click
    from kedro.framework.cli.utils import _split_params

    def parsed(text: str) -> DistillationSettings:
        runtime = _split_params(click.Context(click.Command("run")), click.Option(["--params"]), text)
        return DistillationSettings.model_validate(runtime["distillation"])

    assert parsed("distillation.schedule=seqkd distillm_v2 kd").losses == ["seqkd", "distillm_v2", "kd"]
    keyed = parsed("distillation.schedule.0.loss=seqkd,distillation.schedule.1.loss=distillm_v2,"
                   "distillation.schedule.1.distillm.beta=0.5")
    assert keyed.losses == ["seqkd", "distillm_v2"] and keyed.for_round(2).distillm.beta == 0.5
    with pytest.raises(ValueError, match="positions must run 0, 1, 2"):
        parsed("distillation.schedule.0.loss=seqkd,distillation.schedule.2.loss=kd")


def test_bad_schedules_are_refused_with_the_allowed_losses(tmp_path):
    message = _problems(tmp_path, {"distillation": {}}, runtime={"distillation": {"schedule": "seqkd sft"}})
    assert "distillation.schedule.1.loss: Input should be 'distillm_v2', 'distillm_v1', 'kd'" in message
    assert "(got 'sft') (set in --params)" in message
    message = _problems(tmp_path / "b", {"distillation": {"loss": "kd", "schedule": [{"loss": "kd"}]}})
    assert "set either loss (the same loss every round) or schedule" in message
    message = _problems(tmp_path / "c", {"distillation": {"rounds": 3, "schedule": [{"loss": "kd"}]}})
    assert "rounds is 3 but schedule has 1 entries" in message
    message = _problems(tmp_path / "d", {"distillation": {"schedule": [{"loss": "kd", "distillm": {"bta": 1}}]}})
    assert "schedule entry 1: distillm.bta: Extra inputs are not permitted" in message
    never_adapts = {"loss": "distillm_v2", "distillm": {"adaptive_alpha": True}, "training": {"max_steps": 10}}
    message = _problems(tmp_path / "e", {"distillation": {"schedule": [{"loss": "seqkd"}, never_adapts]}})
    assert ("schedule entry 2: distillm.adaptive_alpha is on, but alpha adapts only after the "
            "distillm.alpha_anchor_steps (10) anchor steps and the round trains training.max_steps 10") in message
    never_adapts["distillm"]["alpha_anchor_steps"] = 2
    assert DistillationSettings.model_validate({"schedule": [never_adapts]}).for_round(1).distillm.adaptive_alpha


def test_every_distillation_arm_is_a_kedro_run_configuration_that_validates():
    """Each conf/arms/<arm>.yml is read by `kedro run --config` as its environment, pipelines and
    parameters; every key of every arm exists in its environment, so no arm runs on silently different
    settings."""
    from kedro.framework.cli.project import run

    from fsku_kedro.cli_hooks import command_params

    arms = sorted((PROJECT_ROOT / "conf" / "arms").glob("*.yml"))
    assert len(arms) >= 10
    for path in arms:
        context = run.make_context("run", ["--config", str(path)])
        env, pipelines, runtime = context.params["env"], context.params["pipelines"], context.params["params"]
        assert pipelines == ["knowledge_base", "response_generation", "distillation"], path.name
        assert command_params(["run", "--config", str(path)]) == runtime, "the graph is built from the same"
        resolved = _resolved(env, runtime)
        DistillationSettings.model_validate(resolved["distillation"])
        for key, given in _leaves(runtime):
            held = resolved
            for part in key:  # a schedule entry is keyed by its position
                held = held[int(part)] if isinstance(held, list) else held[part]
            if key == ("distillation", "schedule"):  # expanded into one entry per round
                held, given = [round_["loss"] for round_ in held], given.split()
            assert held == given, f"{path.name}: {'.'.join(key)}"


def _leaves(tree: dict, prefix: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value

def test_kedro_receives_each_block_a_node_reads_as_its_validated_model():
    from fsku_kedro.parameters import parameters_for_nodes, validate_parameters
    from fsku_kedro.parameters.generation import RoleGenerationSettings
    from fsku_kedro.parameters.student_shape import StudentShapeSettings

    validated = validate_parameters({"student_shape": {"layers": 3}, "teacher": {"generation": {"max_new_tokens": 7}}})
    tree = parameters_for_nodes(validated, {"distillation", "teacher.generation"})
    assert tree["distillation"] is validated["distillation"]
    assert tree["student_shape"] is validated["student_shape"] and isinstance(tree["student_shape"], StudentShapeSettings)
    assert isinstance(tree["teacher"], dict), "a block whose parts nodes read stays a mapping of them"
    assert isinstance(tree["teacher"]["generation"], RoleGenerationSettings)
    assert tree["teacher"]["generation"].max_new_tokens == 7
