"""compression: the distilled student (or the directory model_dirs.compression names) -> quantized
variants (GPTQ, AWQ, NF4, int8, int8 dynamic) -> the served variant (or the model unquantized) and a
size / speed / quality report."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import build_calibration_set, compression_report, quantize_student, select_served_student


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(build_calibration_set, inputs=["chunks", "prompt_set", "prompt_templates", "params:compression"],
                 outputs="calibration_set", name="build_calibration_set"),
            node(quantize_student, inputs=["distilled_student@path", "calibration_set", "params:compression"],
                 outputs="quantized_students", name="quantize_student"),
            node(select_served_student, inputs=["quantized_students", "distilled_student@path", "params:compression"],
                 outputs="compressed_student@model", name="select_served_student"),
            node(
                compression_report,
                inputs=["distilled_student@path", "quantized_students", "calibration_set", "sample_questions",
                        "sample_labels", "sample_split", "prompt_templates", "embedder", "params:compression",
                        "params:inference"],
                outputs=["compression_report", "compression_metrics", "compression_plot"],
                name="compression_report",
            ),
        ],
        tags="compression",
    )
