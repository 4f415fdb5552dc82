"""Pipeline templates used by more than one pipeline (not a pipeline of its own)."""

from kedro.pipeline import Pipeline, node, pipeline

from fsku_kedro.generation.pairs import build_pairs
from fsku_kedro.generation.responses import generate_responses


def generation_template() -> Pipeline:
    """Responses of ``model`` over ``prompt_set``; instantiated under the namespaces ``teacher`` and
    ``student`` (and ``round_<n>.student`` in distillation), reading ``params:generation`` mapped to
    the role's ``generation`` block."""
    return pipeline([
        node(generate_responses, inputs=["prompt_set", "model", "response_store", "params:generation"],
             outputs="responses", name="generate_responses"),
    ])


def pairs_template() -> Pipeline:
    """Teacher and student responses joined into the preference pair dataset."""
    return pipeline([
        node(build_pairs, inputs=["prompt_set", "teacher.responses", "student.responses",
                                  "params:response_generation.pairs"],
             outputs=["pair_dataset", "pair_report", "pair_metrics"], name="build_pairs"),
    ])
