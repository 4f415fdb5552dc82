"""Old versions of the large versioned datasets (models, adapters, indices), kept or removed by one
rule: keep the last N versions of each, and every version an MLflow run or a competition package
still points to. ``python -m fsku_kedro.versions`` applies it (see ``__main__``); the rule itself is
``retention.plan_retention``."""
