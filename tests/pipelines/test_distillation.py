"""The distillation pipeline: its shape per number of rounds, and a whole run on tiny models."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from fsku_kedro.datasets import ModelDirectoryDataset, PretrainedModelDataset, ResponseStoreDataset
from fsku_kedro.evaluation.held_out import held_out_questions
from fsku_kedro.models.derivation import derive
from fsku_kedro.parameters.distillation import (
    DistillationSettings,
    HeldOutBenchmarkSettings,
    ValidationSettings,
)
from fsku_kedro.parameters.generation import GenerationSettings, RoleGenerationSettings
from fsku_kedro.parameters.inference import BenchmarkSliceSettings, InferenceSettings
from fsku_kedro.parameters.response_generation import ResponseGenerationSettings
from fsku_kedro.pipelines import distillation, response_generation
from fsku_kedro.pipelines.distillation.nodes import select_best_round
from tests.conftest import sample_set, settings_params
from tests.distillation.conftest import training_parameters
from tests.pipelines.test_knowledge_base import KeptDataset
from tests.pipelines.test_response_generation import (
    NO_CHUNKS,
    PROMPT_SET,
    TEMPLATES,
    no_user_data,
    sample_questions,
)
from tests.test_benchmark_validation import _benchmark


def sample_labels():
    return sample_set()[1]


def test_rounds_shape_the_graph():
    one = distillation.create_pipeline(rounds=1)
    assert {n.name for n in one.nodes} == {
        "teacher_choice_targets", "round_0.validate_student", "round_1.train_student", "round_1.plot_training_curves",
        "round_1.merge_student", "round_1.validate_student", "select_best_round", "compare_distillation_runs"}
    three = {n.name: n for n in distillation.create_pipeline(rounds=3).nodes}
    assert three["round_2.student.generate_responses"].inputs == [
        "prompt_set", "round_1.distilled_student", "round_2.student.response_store", "params:student.generation"]
    assert three["round_3.build_pairs"].inputs == [
        "prompt_set", "teacher.responses", "round_3.student.responses", "params:response_generation.pairs"]
    assert three["round_3.train_student"].inputs == [
        "round_3.pair_dataset", "choice_targets", "teacher_model", "round_2.distilled_student", "params:distillation"]
    assert three["round_1.train_student"].inputs[0] == "pair_dataset"
    assert three["select_best_round"].outputs == ["distilled_student@model", "distillation_summary"]


@pytest.mark.parametrize("order", [(1, 2, 3), (3, 1, 2), (2, 3, 1, 2)])
def test_graphs_for_1_2_and_3_rounds_depend_only_on_their_count(order):
    """No state survives a build: whatever was built before, a count gives the same graph."""
    first = {count: distillation.create_pipeline(rounds=count) for count in (1, 2, 3)}
    for count in order:
        graph = distillation.create_pipeline(rounds=count)
        assert {n.name for n in graph.nodes} == {n.name for n in first[count].nodes}
        assert distillation.graph_rounds(graph) == count
        trained = {n.name.split(".")[0] for n in graph.nodes if n.name.endswith(".train_student")}
        assert trained == {f"round_{n}" for n in range(1, count + 1)}
    assert distillation.graph_rounds(response_generation.create_pipeline()) is None


def test_the_graph_follows_the_environment_named_by_kedro_env(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    for env, rounds in (("base", None), ("local", None), ("one_round", 1), ("two_rounds", 2), ("three_rounds", 3)):
        (conf / env).mkdir(parents=True)
        if rounds:
            (conf / env / "parameters_distillation.yml").write_text(f"distillation:\n  rounds: {rounds}\n")
    monkeypatch.chdir(tmp_path)
    for env, rounds in (("three_rounds", 3), (None, 2), ("two_rounds", 2), ("one_round", 1), (None, 2)):
        if env:
            monkeypatch.setenv("KEDRO_ENV", env)
        else:
            monkeypatch.delenv("KEDRO_ENV", raising=False)
        assert distillation.graph_rounds(distillation.create_pipeline()) == rounds
    (conf / "local" / "parameters_distillation.yml").write_text("distillation:\n  roundz: 2\n")
    assert distillation.configured_rounds() == 2, "unreadable settings build the default (the run reports them)"


def test_held_out_questions_are_the_ones_the_prompt_set_left_out():
    prompts, split = response_generation.nodes.build_prompt_set(
        pd.DataFrame(columns=["qa_id"]), NO_CHUNKS, sample_questions(), no_user_data(), TEMPLATES, PROMPT_SET)
    questions, labels = held_out_questions(sample_questions(), sample_labels(), split)
    assert questions and len(questions) + (prompts.source == "sample").sum() == len(sample_questions())
    assert all(q.ID in labels for q in questions)
    assert not {q.Question for q in questions} & {p for p in prompts.prompt}


def test_selection_keeps_the_best_round_and_checks_the_round_count():
    base, r1, r2 = (SimpleNamespace(name=name) for name in ("base", "r1", "r2"))
    reports = [{"fsku_score": 0.3, "token_kl": 2.0}, {"fsku_score": 0.5, "token_kl": 1.5},
               {"fsku_score": 0.5, "token_kl": 1.0}]
    two = DistillationSettings(rounds=2)
    best, table = select_best_round(two, *reports, base, r1, r2)
    assert best is r2 and table["selected"].tolist() == [False, False, True]
    best, _ = select_best_round(two, {"fsku_score": 0.9, "token_kl": 3.0}, *reports[1:], base, r1, r2)
    assert best is base, "the score check may keep the undistilled student"
    best, _ = select_best_round(DistillationSettings(rounds=2, keep_base_if_better=False),
                                {"fsku_score": 0.9, "token_kl": 3.0}, *reports[1:], base, r1, r2)
    assert best is r2
    with pytest.raises(ValueError, match="the graph holds 2 rounds"):
        select_best_round(DistillationSettings(rounds=3), *reports, base, r1, r2)


def test_selection_by_held_out_benchmark_accuracy_averages_the_option_orders():
    base, r1 = SimpleNamespace(name="base"), SimpleNamespace(name="r1")
    reports = [{"fsku_score": 0.6, "token_kl": 1.0, "benchmark_own_mc_accuracy": 0.35,
                "benchmark_shuffled_mc_accuracy": 0.25},
               {"fsku_score": 0.5, "token_kl": 1.5, "benchmark_own_mc_accuracy": 0.45,
                "benchmark_shuffled_mc_accuracy": 0.40}]
    by_score = DistillationSettings(rounds=1, validation={"fsku_benchmark": {"mc_questions": 200}})
    assert select_best_round(by_score, *reports, base, r1)[0] is base
    by_benchmark = DistillationSettings(rounds=1, validation={"select_by": "benchmark_mc_accuracy",
                                                              "fsku_benchmark": {"mc_questions": 200}})
    best, table = select_best_round(by_benchmark, *reports, base, r1)
    assert best is r1 and table["selection_figure"].tolist() == pytest.approx([0.30, 0.425])
    with pytest.raises(ValueError, match="select_by benchmark_mc_accuracy needs"):
        DistillationSettings(rounds=1, validation={"select_by": "benchmark_mc_accuracy"})


@pytest.mark.slow
def test_two_rounds_train_merge_regenerate_and_validate(tiny_llama_dir, tiny_embedder, tmp_path):
    generation = RoleGenerationSettings(batch_size=8, max_new_tokens=6, do_sample=True)
    parameters = training_parameters(max_steps=2, learning_rate=5e-3).model_copy(update={
        "rounds": 2, "checkpoint_dir": str(tmp_path / "checkpoints"),
        "validation": ValidationSettings(max_pairs=4, fsku_benchmark=HeldOutBenchmarkSettings(
                                             mc_questions=3, descriptive_questions=1,
                                             excluded=BenchmarkSliceSettings(mc_limit=4, descriptive_limit=1))),
    })
    benchmark_mc, benchmark_answers, benchmark_descriptive = _benchmark(12, 2)
    data = {
        "teacher_model": PretrainedModelDataset(source=str(tiny_llama_dir), name="tiny-teacher").load(),
        "student_model": replace(derive(PretrainedModelDataset(source=str(tiny_llama_dir), name="tiny").load(), [], 2,
                                        "evenly_spaced", None), name="tiny-student"),
        "prompt_templates": TEMPLATES,
        "sample_questions": sample_questions(),
        "sample_labels": sample_labels(),
        "user_instructions": no_user_data(),
        "synthetic_qa": pd.DataFrame(columns=["qa_id"]),
        "test_questions": sample_questions(),
        "fsku_benchmark_mc": benchmark_mc,
        "fsku_benchmark_mc_answers": benchmark_answers,
        "fsku_benchmark_descriptive": benchmark_descriptive,
        "distillation_runs": pd.DataFrame(),
        "chunks": pd.DataFrame(columns=["doc_id", "title", "content"]),
        "embedder": tiny_embedder,
        **settings_params("response_generation", ResponseGenerationSettings(prompt_set=PROMPT_SET)),
        "params:teacher.generation": generation,
        "params:student.generation": generation,
        **settings_params("distillation", parameters),
        **settings_params("inference", InferenceSettings(batch_size=4, generation=GenerationSettings(max_new_tokens=6))),
    }
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in data.items()})
    for side in ("teacher", "student", "round_2.student"):
        catalog[f"{side}.response_store"] = ResponseStoreDataset(str(tmp_path / f"{side}.jsonl"))
    catalog["choice_target_progress"] = ResponseStoreDataset(str(tmp_path / "choice_targets.jsonl"))
    catalog["benchmark_validation_progress"] = ResponseStoreDataset(str(tmp_path / "benchmark.jsonl"))
    catalog["distillation_summary"] = KeptDataset(copy_mode="assign")
    catalog["choice_targets"] = KeptDataset(copy_mode="assign")
    for n in (1, 2):  # intermediate models on disk, as in the project's catalog
        catalog[f"round_{n}.distilled_student"] = ModelDirectoryDataset(str(tmp_path / f"round_{n}"))
    generation_only = response_generation.create_pipeline().from_nodes("build_prompt_set")
    SequentialRunner().run(generation_only + distillation.create_pipeline(rounds=2), catalog)

    students = [catalog.load(f"round_{n}.distilled_student") for n in (1, 2)]
    assert [s.name for s in students] == ["tiny-student+distilled-r1", "tiny-student+distilled-r2"]
    lines = (tmp_path / "round_2.student.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["model"] for line in lines} == {"tiny-student+distilled-r1"}, "round 2 uses round 1's student"
    summary = catalog.load("distillation_summary")
    assert summary["round"].tolist() == [0, 1, 2] and summary["selected"].sum() == 1
    for column in ("fsku_score", "mc_accuracy", "token_kl", "teacher_response_nll"):
        assert summary[column].notna().all(), column
    assert catalog.load("distilled_student@model").name == summary.loc[summary.selected, "model"].item()
    history = catalog.load("round_1.training_history")
    assert [p["step"] for p in history["loss"]] == [1, 2] and "kl.rejected" not in history, "round 1: the SFT warm-up"
    assert "kl.rejected" in catalog.load("round_2.training_history"), "round 2: DistiLLM-2 uses the student's responses"
    assert history["summary.steps"][0]["value"] == 2 and history["summary.tokens_per_second"][0]["value"] > 0
    assert catalog.load("choice_targets").empty, "no choice_target round: the teacher scores no option"
    metrics = catalog.load("round_2.validation_metrics")
    assert 0.0 <= metrics["fsku_score"]["value"] <= 1.0
    # Held-out FSKU benchmark questions, by the served path, in both option orders.
    for order in ("own", "shuffled"):
        assert 0.0 <= metrics[f"benchmark_{order}_mc_accuracy"]["value"] <= 1.0
    assert "benchmark_own_descriptive_score" in metrics and "benchmark_shuffled_descriptive_score" not in metrics
    answered = [json.loads(line) for line in (tmp_path / "benchmark.jsonl").read_text(encoding="utf-8").splitlines()]
    per_student = {}
    for record in answered:
        per_student.setdefault(record["fingerprint"], set()).add(record["prompt_id"])
    assert sorted(map(len, per_student.values())) == [3 + 1 + 3] * 3, "each round's student answers each item once"
    assert catalog.load("round_1.training_curves").axes, "training curves are plotted"

    # Run again with each round's student saved to another folder, as a new version of a killed run
    # is: the responses, checkpoints and answers are keyed by the weights, so nothing is redone.
    stores = {name: (tmp_path / name).read_bytes() for name in ("round_2.student.jsonl", "benchmark.jsonl")}
    for n in (1, 2):
        catalog[f"round_{n}.distilled_student"] = ModelDirectoryDataset(str(tmp_path / f"round_{n}_again"))
    SequentialRunner().run(generation_only + distillation.create_pipeline(rounds=2), catalog)
    assert {name: (tmp_path / name).read_bytes() for name in stores} == stores, "no response or answer is redone"
    assert [len(list((tmp_path / "checkpoints" / f"round_{n}").iterdir())) for n in (1, 2)] == [1, 1], (
        "each round resumes from its own checkpoints")
    assert catalog.load("round_2.validation_metrics") == metrics
