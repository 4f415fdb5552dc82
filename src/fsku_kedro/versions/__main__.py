"""Remove old versions of the catalog's large versioned datasets (models, adapters, indices), keeping
the last N of each and every version that an MLflow run or a competition package points to.

``python -m fsku_kedro.versions [--env ENV] [--keep N] [--dataset NAME ...] [--dry-run | --apply]``,
from the project root. A dry run (the default) lists every version, what would be removed and the
bytes it frees; ``--apply`` removes them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1: the newest version is the one Kedro loads")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fsku_kedro.versions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=None,
                        help="configuration environment (default: KEDRO_ENV, else local)")
    parser.add_argument("--keep", type=_at_least_one, default=2, metavar="N",
                        help="newest versions kept of each dataset (default: 2)")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME",
                        help="only this dataset (repeatable), e.g. round_1.student_adapter")
    parser.add_argument("--remove-unfinished", action="store_true",
                        help="also remove versions whose save never finished (only when no run is writing)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="apply", action="store_false", default=False,
                      help="list what would be removed (the default)")
    mode.add_argument("--apply", dest="apply", action="store_true", help="remove it")
    return parser.parse_args(argv)


def tracking_uri(context: Any) -> str:
    """The MLflow store a `kedro run` in this environment writes to."""
    import mlflow
    from kedro.config import MissingConfigException

    from fsku_kedro.hooks import anchored_tracking_uri

    try:
        uri = context.config_loader["mlflow"]["server"]["mlflow_tracking_uri"]
    except (KeyError, TypeError, MissingConfigException):
        uri = None
    return anchored_tracking_uri(uri, context.project_path) if uri else mlflow.get_tracking_uri()


def main(argv: list[str] | None = None) -> int:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from fsku_kedro.errors import UserInputError
    from fsku_kedro.versions.prune import apply, plan_for_catalog, summary, table

    args = parse_args(argv)
    project = Path.cwd()
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project, env=args.env) as session:
            context = session.load_context()
            pruning = plan_for_catalog(context.catalog, context.config_loader["catalog"], project,
                                       tracking_uri(context), args.keep, args.dataset, args.remove_unfinished)
    except UserInputError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    sys.stdout.write(table(pruning) + "\n")
    failed = apply(pruning) if args.apply else {}
    sys.stdout.write(summary(pruning, args.apply, failed) + "\n")
    if failed:
        sys.stderr.write("Some versions could not be removed:\n- " + "\n- ".join(failed.values()) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
