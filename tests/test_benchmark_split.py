"""The FSKU benchmark's split into dev (where settings, recipes and rounds are chosen) and test (final
figures only): made once, disjoint, and never read by a selection."""

from __future__ import annotations

import pandas as pd
import pytest

from fsku_kedro.evaluation.fsku_benchmark import (
    SplitReadError,
    benchmark_set,
    benchmark_split,
    benchmark_split_sets,
    held_out_benchmark,
)
from fsku_kedro.parameters.distillation import DistillationSettings, HeldOutBenchmarkSettings
from fsku_kedro.parameters.inference import InferenceSettings
from tests.conftest import PROJECT_ROOT
from tests.test_settings import ENVIRONMENTS, _resolved

RELEASED = PROJECT_ROOT.parent / "shared" / "fsku-benchmark"


def _benchmark(mc_count: int = 500, descriptive_count: int = 50):
    mc = pd.DataFrame({"Domain": "IT", "Sub_domain": "x",
                       "Question": [f"보안 문제 {i}?\n1 가{i}\n2 나{i}\n3 다{i}\n4 라{i}" for i in range(mc_count)]})
    answers = pd.DataFrame({"Answer": [str(i % 4 + 1) for i in range(mc_count)]})
    descriptive = pd.DataFrame({"Question": [f"정책 {i}을 설명하세요." for i in range(descriptive_count)],
                                "Answer": [f"답 {i}" for i in range(descriptive_count)], "Keyword": "정책"})
    return mc, answers, descriptive


def _kinds(ids: set[str]) -> tuple[int, int]:
    return sum(i.startswith("FSKU_MC") for i in ids), sum(i.startswith("FSKU_DESC") for i in ids)


def test_dev_holds_the_settings_slice_and_the_validation_questions_and_test_the_rest():
    tables = _benchmark()
    split = benchmark_split(*tables)
    assert _kinds(split["dev"]) == (400, 40) and _kinds(split["test"]) == (100, 10)
    assert not split["dev"] & split["test"]
    shipped = held_out_benchmark(*tables, HeldOutBenchmarkSettings(mc_questions=200, descriptive_questions=20))
    validation = {q.ID for q in shipped["own"][0]}
    settings_slice = {q.ID for q in benchmark_set(*tables, HeldOutBenchmarkSettings().excluded)[0]}
    assert split["dev"] == validation | settings_slice
    for name in ("dev", "test"):
        sets = benchmark_split_sets(*tables, name, ["own", "shuffled"], seed=1)
        assert {q.ID for q in sets["own"][0]} == split[name]
        assert {q.ID for q in sets["shuffled"][0]} == {i for i in split[name] if i.startswith("FSKU_MC")}
    with pytest.raises(ValueError, match="not 'validation'"):
        benchmark_split_sets(*tables, "validation", ["own"], seed=0)


@pytest.mark.parametrize("change", [{"mc_questions": 201}, {"descriptive_questions": 21}, {"seed": 1}])
def test_a_validation_that_would_read_the_test_split_is_refused(change):
    settings = HeldOutBenchmarkSettings(mc_questions=200, descriptive_questions=20).model_copy(update=change)
    with pytest.raises(SplitReadError, match="questions of the FSKU benchmark's test split"):
        held_out_benchmark(*_benchmark(), settings)
    smaller = HeldOutBenchmarkSettings(mc_questions=50, descriptive_questions=5)
    assert len(held_out_benchmark(*_benchmark(), smaller)["own"][0]) == 55, "a smaller validation stays in dev"


def _released():
    if not (RELEASED / "mc_kor.csv").is_file():
        pytest.skip(f"the released FSKU benchmark is not at {RELEASED}")
    from fsku_kedro.datasets import CompetitionCSVDataset

    def read(name: str, columns: list[str]) -> pd.DataFrame:
        return CompetitionCSVDataset(str(RELEASED / name), columns=columns).load()

    return (read("mc_kor.csv", ["Domain", "Question"]), read("mc_answer.csv", ["Answer"]),
            read("descriptive_kor.csv", ["Question", "Answer", "Keyword"]))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_shipped_selection_reads_the_test_split_of_the_released_benchmark(env):
    tables = _released()
    split = benchmark_split(*tables)
    assert _kinds(split["dev"]) == (400, 40) and _kinds(split["test"]) == (600, 68)
    resolved = _resolved(env)
    # Rounds and arms are chosen on the validation questions (the guard would refuse any other).
    validation = DistillationSettings.model_validate(resolved["distillation"]).validation.fsku_benchmark
    read = {q.ID for questions, _ in held_out_benchmark(*tables, validation).values() for q in questions}
    assert read <= split["dev"]
    # The inference settings were chosen on the settings slice; the environments' own benchmark slice
    # (answered and reported by the inference pipeline) lies in it unless it asks for the whole benchmark.
    inference = InferenceSettings.model_validate(resolved["inference"]).fsku_benchmark
    if inference.mc_limit is not None and inference.descriptive_limit is not None:
        assert {q.ID for q in benchmark_set(*tables, inference)[0]} <= split["dev"]


def test_only_validation_decontamination_and_the_inference_report_read_the_benchmark():
    """Compression (calibration), training and every other node read no benchmark file; decontamination
    reads every question, to drop training prompts that copy one, and chooses nothing by a score."""
    from kedro.framework.project import configure_project

    from fsku_kedro.pipeline_registry import register_pipelines

    configure_project("fsku_kedro")
    readers = {node.name for pipeline in register_pipelines().values() for node in pipeline.nodes
               if any(name.startswith("fsku_benchmark_") for name in node.inputs)}
    assert readers and all(name.endswith(("validate_student", "prepare_fsku_benchmark", "decontaminate")) for name in readers), readers
