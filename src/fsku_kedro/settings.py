"""Kedro project settings."""

import os

from kedro.config import OmegaConfigLoader

from fsku_kedro.hooks import (
    EngineReleaseHook,
    InputVersionsHook,
    ModelLocationHook,
    ModelPreflightHook,
    ProjectMlflowHook,
    RunTimingHook,
    SettingsHook,
)
from fsku_kedro.log_setup import install_log_filters

# Offline by default: nothing is fetched from a model hub and no telemetry is sent.
# A user who wants the hub exports HF_HUB_OFFLINE=0 before `kedro run`.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "KEDRO_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

install_log_filters()

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Parameters in an environment (conf/gpu, conf/local) override single keys of conf/base;
    # a catalog entry there replaces the whole entry of the same name.
    "merge_strategy": {"parameters": "soft"},
}

HOOKS = (SettingsHook(), ModelPreflightHook(), InputVersionsHook(), ModelLocationHook(), RunTimingHook(),
         EngineReleaseHook(), ProjectMlflowHook())
# kedro-mlflow's own hook is replaced by ProjectMlflowHook, which extends it.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow",)
