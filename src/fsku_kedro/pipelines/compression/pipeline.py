"""compression: the distilled student -> quantized variants (GPTQ, NF4, int8, int8 dynamic) -> the served
variant and a size / speed / quality report."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import build_calibration_set, compression_report, quantize_student, select_served_student


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(build_calibration_set, inputs=["chunks", "prompt_set", "params:compression.calibration"],
                 outputs="calibration_set", name="build_calibration_set"),
            node(quantize_student, inputs=["distilled_student", "calibration_set", "params:compression"],
                 outputs="quantized_students", name="quantize_student"),
            node(select_served_student, inputs=["quantized_students", "params:compression"],
                 outputs="compressed_student@model", name="select_served_student"),
            node(
                compression_report,
                inputs=["distilled_student", "quantized_students", "calibration_set", "sample_questions",
                        "sample_labels", "prompt_templates", "embedder", "params:compression",
                        "params:response_generation.prompt_set"],
                outputs=["compression_report", "compression_metrics", "compression_plot"],
                name="compression_report",
            ),
        ],
        tags="compression",
    )
