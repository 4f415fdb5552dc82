"""Print every setting with the value a run would use: ``python -m fsku_kedro.parameters [--env ENV]
[--params key=value,...]``, from the project root. Exits with 1 and the problems when the
parameters do not validate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def main(argv: list[str] | None = None) -> int:
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project

    from fsku_kedro.parameters import SettingsError, resolve_parameters
    from fsku_kedro.parameters.sources import ParameterSources

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=None, help="configuration environment (default: local)")
    parser.add_argument("--params", default="", help="runtime parameters, as for kedro run: a.b=1,c=x")
    parser.add_argument("--block", default=None, help="print only this top-level block")
    args = parser.parse_args(argv)
    from kedro.framework.cli.utils import _split_params  # the parser of `kedro run --params`

    bootstrap_project(Path.cwd())
    runtime = _split_params(None, None, args.params) if args.params else {}
    conf_source = str(Path.cwd() / settings.CONF_SOURCE)
    loader = settings.CONFIG_LOADER_CLASS(conf_source=conf_source, env=args.env, runtime_params=runtime,
                                          **settings.CONFIG_LOADER_ARGS)
    sources = ParameterSources(loader, args.env or loader.default_run_env, runtime)
    try:
        resolved = resolve_parameters(loader["parameters"], sources)
    except SettingsError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    shown = {args.block: resolved[args.block]} if args.block else resolved
    sys.stdout.write(yaml.safe_dump(shown, allow_unicode=True, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
