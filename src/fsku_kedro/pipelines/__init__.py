"""The project's Kedro pipelines, one package each."""
