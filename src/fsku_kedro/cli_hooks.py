"""A Kedro CLI hook: before a command runs, its environment and runtime parameters (``--env``,
``--params``, or those of a ``--config`` file) are exported as ``KEDRO_ENV`` and ``FSKU_RUN_PARAMS``.

Kedro builds the pipelines before it reads a run's ``--env`` and ``--params`` (kedro-org/kedro#2627),
and the distillation graph's number of rounds comes from the parameters. With both exported from
the start, ``kedro run`` and ``kedro viz run`` build the graph of the run's own parameters, whatever
reads the pipelines first. Kedro's ``kedro ipython --env`` exports ``KEDRO_ENV`` the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from kedro.framework.cli.hooks import cli_hook_impl

from fsku_kedro.run_params import RUN_PARAMS


def _option(command_args: list[str], long: str, short: str) -> list[str]:
    """Every value of the option ``long`` / ``short`` in ``command_args``, in click's spellings
    (``--opt X``, ``--opt=X``, ``-o X``, ``-oX``), in order."""
    values = []
    for index, arg in enumerate(command_args):
        if arg == "--":
            break
        if arg in (long, short) and index + 1 < len(command_args):
            values.append(command_args[index + 1])
        elif arg.startswith(long + "="):
            values.append(arg.removeprefix(long + "="))
        elif arg.startswith(short) and len(arg) > len(short) and not arg.startswith("--"):
            values.append(arg[len(short):])
    return values


def _config_run(command_args: list[str]) -> dict[str, Any]:
    """The ``run`` section of the command's ``--config`` file ({} without one)."""
    files = _option(command_args, "--config", "-c")
    if not files or not Path(files[-1]).is_file():
        return {}
    content = yaml.safe_load(Path(files[-1]).read_text(encoding="utf-8")) or {}
    return content.get("run") or {}


def command_env(command_args: list[str]) -> str | None:
    """The environment a command names: its last ``--env``, else its ``--config`` file's."""
    values = _option(command_args, "--env", "-e")
    return values[-1] if values and values[-1] else _config_run(command_args).get("env") or None


def command_params(command_args: list[str]) -> dict[str, Any]:
    """The runtime parameters a command gives: its ``--config`` file's, then its ``--params``
    (``key.path=value`` items separated by commas, as Kedro reads them) on top."""
    from omegaconf import OmegaConf

    params = dict(_config_run(command_args).get("params") or {})
    for value in _option(command_args, "--params", "--params"):
        items = [item.strip() for item in value.split(",") if "=" in item]
        given = OmegaConf.to_container(OmegaConf.from_dotlist(items)) if items else {}
        params = OmegaConf.to_container(OmegaConf.merge(params, given))
    return params


class RunExport:
    @cli_hook_impl
    def before_command_run(self, project_metadata: Any, command_args: list[str]) -> None:
        try:
            env, params = command_env(command_args), command_params(command_args)
        except Exception:  # noqa: BLE001 - kedro itself then reports the malformed option or file
            return
        if env:
            os.environ["KEDRO_ENV"] = env
        if params:
            os.environ[RUN_PARAMS] = json.dumps(params)
        else:
            os.environ.pop(RUN_PARAMS, None)


cli_hooks = RunExport()
