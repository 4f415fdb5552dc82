"""response_generation: the student derived from its source; chunks -> synthetic QA -> prompt set
(decontaminated) -> teacher and student responses -> pairs.

Generation is one template pipeline instantiated under the namespaces ``teacher`` and
``student``, so both show as stages in kedro-viz and read their own parameters
(``teacher.generation``, ``student.generation``).
"""

from kedro.pipeline import Pipeline, node, pipeline

from fsku_kedro.pipelines.templates import generation_template, pairs_template

from .nodes import build_prompt_set, decontaminate, derive_student, write_synthetic_qa


def create_pipeline(**kwargs) -> Pipeline:
    prepare = pipeline(
        [
            node(
                derive_student,
                inputs=["student_source", "chunks", "params:student_shape"],
                outputs="student_model",
                name="derive_student",
            ),
            node(
                write_synthetic_qa,
                inputs=["chunks", "teacher_model", "prompt_templates", "synthetic_qa_progress",
                        "params:response_generation.synthetic_qa"],
                outputs=["synthetic_qa", "synthetic_qa_report"],
                name="write_synthetic_qa",
            ),
            node(
                build_prompt_set,
                inputs=[
                    "synthetic_qa",
                    "chunks",
                    "sample_questions",
                    "user_instructions",
                    "prompt_templates",
                    "params:response_generation.prompt_set",
                ],
                outputs=["prompt_set_candidates", "sample_split"],
                name="build_prompt_set",
            ),
            node(
                decontaminate,
                inputs=["prompt_set_candidates", "sample_questions", "sample_split", "test_questions",
                        "fsku_benchmark_mc", "fsku_benchmark_descriptive",
                        "params:response_generation.decontamination"],
                outputs=["prompt_set", "decontamination_report", "decontamination_metrics"],
                name="decontaminate",
            ),
        ]
    )
    teacher = pipeline(generation_template(), namespace="teacher", inputs={"prompt_set": "prompt_set", "model": "teacher_model"})
    student = pipeline(generation_template(), namespace="student", inputs={"prompt_set": "prompt_set", "model": "student_model"})
    return pipeline(prepare + teacher + student + pairs_template(), tags="response_generation")
