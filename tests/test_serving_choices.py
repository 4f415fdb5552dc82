"""benchmarks/serving_choices.py on a tiny real model and a small made-up benchmark: the dev split as
it asks it, each setting's answers and costs, descriptive answers shared across debiasing, and the
choice within the time budget."""

from __future__ import annotations

import pytest

from tests.conftest import PROJECT_ROOT, benchmark_script
from tests.test_benchmark_split import _benchmark
from tests.test_held_out_final import _catalog

TEMPLATES = {p.stem: p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "data/01_raw/prompts").glob("*.txt")}


@pytest.fixture(scope="module")
def script():
    yield from benchmark_script("serving_choices")


def test_the_dev_split_shuffled_with_descriptive_questions_as_published(script):
    from fsku_kedro.evaluation.fsku_benchmark import benchmark_split, benchmark_split_sets
    from fsku_kedro.questions import shuffled_order

    tables = _benchmark()
    own = {label.ID: label.answer for label in benchmark_split_sets(*tables, "dev", ["own"], seed=0)["own"][1]}
    questions, labels, published = script.dev_set(_catalog(tables), limit=None)
    assert {q.ID for q in questions} == benchmark_split(*tables)["dev"]
    assert [label.ID for label in labels] == [q.ID for q in questions]
    moved = [q for q in questions if q.choices and q.choices != published[q.ID].choices]
    assert moved, "options are shown shuffled"
    for question in moved[:20]:
        label = next(label for label in labels if label.ID == question.ID)
        assert shuffled_order(published[question.ID], script.SEED)[int(label.answer) - 1] == int(own[question.ID])
    small, small_labels, _ = script.dev_set(_catalog(tables), limit=12)
    assert sum(q.question_type == "multiple_choice" for q in small) == 12
    assert sum(q.question_type == "descriptive" for q in small) == 1 and len(small_labels) == 13


def test_each_setting_is_answered_and_timed_and_the_budget_chooses(script, tiny_llama_dir, tiny_embedder, tmp_path):
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.models.loading import load_any_model
    from fsku_kedro.parameters.inference import InferenceSettings

    questions, labels, published = script.dev_set(_catalog(_benchmark()), limit=6)
    bundle = load_any_model(tiny_llama_dir, dtype="float32")
    store = ResponseStore(tmp_path / "progress.jsonl")
    inference = InferenceSettings(generation={"max_new_tokens": 8})
    context = {"inference": inference, "templates": TEMPLATES,
               "score_embedder": tiny_embedder, "store": store}
    one_pass, rows = script.measure(bundle, questions, labels, {}, False, False, context)
    cyclic, cyclic_rows = script.measure(bundle, questions, labels, {}, False, True, context)
    for scores in (one_pass, cyclic):
        assert 0.0 <= scores["mc_accuracy"] <= 1.0 and scores["descriptive_score"] >= 0.0
        assert scores["projected_minutes"] == pytest.approx(
            (500 * scores["mc_seconds_per_question"] + 15 * scores["descriptive_seconds_per_question"]) / 60)
    assert len(rows) == len(cyclic_rows) == len(questions)
    # The descriptive answer is asked once; the cyclic setting reads it back from the store.
    descriptive = [(a.answer, a.inference_time) for a in rows if a.question_type == "descriptive"]
    assert descriptive == [(a.answer, a.inference_time) for a in cyclic_rows if a.question_type == "descriptive"]
    expected = {label.ID: label.answer for label in labels}
    record = script.answer_record([row.model_dump() for row in cyclic_rows], expected, published,
                                  f"shuffled_{script.SEED}")
    assert record["ID"] == [row.ID for row in cyclic_rows]
    assert all(len(p) == len(published[i].choices) for i, p in zip(record["ID"], record["probabilities"]) if p)
    figures = {"fast": {"fsku_score": 0.50, "projected_minutes": 12.0},
               "best": {"fsku_score": 0.60, "projected_minutes": 29.0},
               "slow": {"fsku_score": 0.70, "projected_minutes": 95.0},
               "tied": {"fsku_score": 0.60, "projected_minutes": 20.0}}
    assert script.chosen(figures, budget=30.0) == "tied"  # the best within budget; a tie goes to the faster
    assert script.chosen(figures, budget=10.0) is None
