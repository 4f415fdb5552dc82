"""package: the served model, the knowledge base, prompts, settings and the submission -> one
versioned archive whose answer.py replays the submission offline."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import build_package


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                build_package,
                inputs=["compressed_student@path", "chunks", "bm25_index", "faiss_index", "embedder", "reranker",
                        "prompt_templates", "submission", "submission_rows", "input_versions", "params:inference",
                        "params:retrieval", "params:package"],
                outputs=["competition_package", "package_report", "package_metrics"],
                name="build_package",
            ),
        ],
        tags="package",
    )
