"""inference: test.csv -> retrieval (cached) -> answers under a time budget (resumable) ->
submission.csv and the FSKU evaluation; the same stages run on the FSKU benchmark under the
``fsku_benchmark`` namespace."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import (
    answer_test_questions,
    evaluate_answers,
    load_inference_model,
    plot_answer_distribution,
    prepare_fsku_benchmark,
    retrieve_passages,
    write_submission,
)

SHARED_INPUTS = {"chunks", "bm25_index", "faiss_index", "embedder", "reranker", "inference_model",
                 "prompt_templates", "score_embedder"}
SHARED_PARAMETERS = {"params:inference", "params:retrieval"}


def answering_stages() -> Pipeline:
    """The stages from a question set to a submission and its evaluation."""
    return pipeline([
        node(retrieve_passages,
             inputs=["test_questions", "chunks", "bm25_index", "faiss_index", "embedder", "reranker",
                     "retrieval_cache", "params:retrieval"],
             outputs=["passages", "retrieval_cache_updated"], name="retrieve_passages"),
        node(answer_test_questions,
             inputs=["test_questions", "passages", "inference_model", "prompt_templates", "answer_progress",
                     "params:inference"],
             outputs="answers", name="answer_test_questions"),
        node(write_submission, ["test_questions", "answers"], ["submission", "submission_rows"],
             name="write_submission"),
        node(evaluate_answers, ["answers", "test_questions", "test_labels", "score_embedder"],
             ["evaluation_report", "evaluation_metrics", "evaluation_plot"], name="evaluate_answers"),
        node(plot_answer_distribution, ["answers", "test_questions", "test_labels"], "answer_distribution_plot",
             name="plot_answer_distribution"),
    ])


def create_pipeline(**kwargs) -> Pipeline:
    served = pipeline([
        node(load_inference_model, ["compressed_student@path", "params:inference"], "inference_model",
             name="load_inference_model"),
    ])
    benchmark = pipeline(
        [node(prepare_fsku_benchmark,
              inputs=["fsku_benchmark_mc", "fsku_benchmark_mc_answers", "fsku_benchmark_descriptive",
                      "params:inference"],
              outputs=["test_questions", "test_labels"], name="prepare_fsku_benchmark"),
         answering_stages()],
        namespace="fsku_benchmark",
        inputs=SHARED_INPUTS | {"fsku_benchmark_mc", "fsku_benchmark_mc_answers", "fsku_benchmark_descriptive"},
        parameters=SHARED_PARAMETERS,
    )
    return pipeline([served, answering_stages(), benchmark], tags="inference")
