"""Held-out FSKU benchmark questions for distillation validation: outside the settings slice, seeded,
shuffled options with their answers renumbered, and scored by the served answering path."""

import pandas as pd
import pytest
import torch

from fsku_kedro.evaluation.benchmark_scores import benchmark_scores
from fsku_kedro.evaluation.fsku_benchmark import benchmark_set, held_out_benchmark
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer
from fsku_kedro.parameters.distillation import HeldOutBenchmarkSettings
from fsku_kedro.parameters.inference import BenchmarkSliceSettings, InferenceSettings
from tests.conftest import PROJECT_ROOT

TEMPLATES = {p.stem: p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "data/01_raw/prompts").glob("*.txt")}


def _benchmark(mc_count: int = 40, descriptive_count: int = 8):
    mc = pd.DataFrame({"Domain": ["IT", "법률"] * (mc_count // 2), "Sub_domain": "x",
                       "Question": [f"보안 문제 {i}에 {'맞지 않는' if i % 3 == 0 else '맞는'} 것은?\n1 가{i}\n2 나{i}\n3 다{i}\n4 라{i}"
                                    for i in range(mc_count)]})
    answers = pd.DataFrame({"Answer": [str(i % 4 + 1) for i in range(mc_count)]})
    descriptive = pd.DataFrame({"Question": [f"정책 {i}을 설명하세요." for i in range(descriptive_count)],
                                "Answer": [f"답 {i}" for i in range(descriptive_count)], "Keyword": "정책, 보안"})
    return mc, answers, descriptive


EXCLUDED = BenchmarkSliceSettings(mc_limit=10, descriptive_limit=2, seed=0)


def test_held_out_questions_stay_outside_the_settings_slice_and_follow_the_seed():
    mc, answers, descriptive = _benchmark()
    settings = HeldOutBenchmarkSettings(mc_questions=12, descriptive_questions=3, excluded=EXCLUDED)
    sets = held_out_benchmark(mc, answers, descriptive, settings)
    assert list(sets) == ["own", "shuffled"]
    own, own_labels = sets["own"]
    excluded, _ = benchmark_set(mc, answers, descriptive, EXCLUDED)
    assert not {q.ID for q in own} & {q.ID for q in excluded}
    kinds = [q.question_type for q in own]
    assert kinds.count("multiple_choice") == 12 and kinds.count("descriptive") == 3
    assert [label.ID for label in own_labels] == [q.ID for q in own]
    again = held_out_benchmark(mc, answers, descriptive, settings)["own"][0]
    other = held_out_benchmark(mc, answers, descriptive, settings.model_copy(update={"seed": 1}))["own"][0]
    assert [q.ID for q in again] == [q.ID for q in own], "the same seed, the same questions"
    assert {q.ID for q in other} != {q.ID for q in own}, "another seed, other questions"


def test_shuffled_options_keep_the_answer_text_under_its_new_number():
    mc, answers, descriptive = _benchmark()
    settings = HeldOutBenchmarkSettings(mc_questions=20, descriptive_questions=2, excluded=EXCLUDED)
    sets = held_out_benchmark(mc, answers, descriptive, settings)
    own = {q.ID: q for q in sets["own"][0]}
    own_key = {label.ID: label.answer for label in sets["own"][1]}
    shuffled, labels = sets["shuffled"]
    assert all(q.question_type == "multiple_choice" for q in shuffled), "descriptive questions go with one order"
    moved = 0
    for question, label in zip(shuffled, labels):
        original = own[question.ID]
        assert question.choices[label.answer] == original.choices[own_key[question.ID]]
        assert sorted(question.choices.values()) == sorted(original.choices.values())
        moved += label.answer != own_key[question.ID]
    assert moved >= 5, "shuffling moves most answers"


@pytest.fixture(scope="module")
def tiny_student(tiny_llama_dir):
    return ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny-student",
                       str(tiny_llama_dir))


def test_benchmark_scores_answer_by_the_served_path_and_resume(tiny_student, tiny_embedder, tmp_path):
    from fsku_kedro.answering.batch_runner import answer_questions
    from fsku_kedro.answering.prompts import PreparedQuestion
    from fsku_kedro.parameters.inference import DebiasSettings

    mc, answers, descriptive = _benchmark()
    settings = HeldOutBenchmarkSettings(mc_questions=8, descriptive_questions=0, excluded=EXCLUDED)
    sets = held_out_benchmark(mc, answers, descriptive, settings)
    templates = TEMPLATES
    inference = InferenceSettings(batch_size=4)
    store = ResponseStore(tmp_path / "progress.jsonl")
    scores, rows = benchmark_scores(tiny_student, sets, templates, tiny_embedder, inference, store)

    # The same answers as the inference path, closed book and in one pass.
    served = inference.model_copy(update={"use_context": False, "debias": DebiasSettings(method="none")})
    for order, (questions, labels) in sets.items():
        direct = answer_questions([PreparedQuestion(q) for q in questions], tiny_student, templates, served,
                                  show_progress=False)
        assert [r["answer"] for r in rows if r["order"] == order] == [r.answer for r in direct]
        key = {label.ID: label.answer for label in labels}
        expected = sum(r.answer == key[r.ID] for r in direct) / len(direct)
        assert scores[f"benchmark_{order}_mc_accuracy"] == pytest.approx(expected)
        negative = [r for r in direct if "맞지 않는" in next(q for q in questions if q.ID == r.ID).Question]
        assert negative and len(negative) < len(direct)
        assert scores[f"benchmark_{order}_negative_mc_accuracy"] == pytest.approx(
            sum(r.answer == key[r.ID] for r in negative) / len(negative)), "the stems asking for what is not correct"
        assert scores[f"benchmark_{order}_fallbacks"] == sum(r.used_fallback for r in direct)

    calls = []
    handle = tiny_student.model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        assert benchmark_scores(tiny_student, sets, templates, tiny_embedder, inference, store)[0] == scores
        assert not calls, "a second validation of the same student reads its answers back"
        moved = ModelBundle(tiny_student.model, tiny_student.tokenizer, tiny_student.name, str(tmp_path / "v2"))
        assert benchmark_scores(moved, sets, templates, tiny_embedder, inference, store)[0] == scores
        assert not calls, "the same weights saved under another version's folder read their answers back"
        with torch.no_grad():
            next(tiny_student.model.parameters()).add_(0.5)
        benchmark_scores(tiny_student, sets, templates, tiny_embedder, inference, store)
        assert calls, "changed weights under the same name are answered again"
    finally:
        handle.remove()
        with torch.no_grad():
            next(tiny_student.model.parameters()).sub_(0.5)


def test_distillation_validation_answers_as_inference_serves(tiny_student, tiny_embedder):
    """The sample-question validation of distillation (and of the compression report) and the inference
    node give the same answers, confidences and methods for the same model and questions, debiasing
    included; the validation's scores are those answers scored."""
    from fsku_kedro.evaluation.closed_book import fsku_validation
    from fsku_kedro.parameters.inference import DebiasSettings
    from fsku_kedro.pipelines.inference.nodes import answer_test_questions

    mc, answers, descriptive = _benchmark(8, 2)
    questions, labels = benchmark_set(mc, answers, descriptive, BenchmarkSliceSettings(mc_limit=8, descriptive_limit=2))
    inference = InferenceSettings(batch_size=4, use_context=False, debias=DebiasSettings(method="cyclic"))
    inference = inference.model_copy(update={"generation": inference.generation.model_copy(update={"max_new_tokens": 8})})
    templates = {name: (lambda text=text: text) for name, text in TEMPLATES.items()}
    served = answer_test_questions(questions, {}, tiny_student, templates, None, inference)
    key = {label.ID: label.answer for label in labels}
    scores, validated = fsku_validation(tiny_student, questions, {label.ID: label for label in labels}, TEMPLATES,
                                        tiny_embedder, inference)
    assert [(r["ID"], r["answer"], r["confidence"], r["method"]) for r in validated] == \
        [(r.ID, r.answer, r.confidence, r.method) for r in served]
    one_pass = answer_test_questions(questions, {}, tiny_student, templates, None,
                                     inference.model_copy(update={"debias": DebiasSettings(method="none")}))
    assert [r.confidence for r in one_pass if r.question_type == "multiple_choice"] != \
        [r.confidence for r in served if r.question_type == "multiple_choice"], \
        "the cyclic debiasing the settings ask for changes the answers' confidences, in both paths"
    mc_rows = [r for r in served if r.question_type == "multiple_choice"]
    assert scores["mc_accuracy"] == pytest.approx(sum(r.answer == key[r.ID] for r in mc_rows) / len(mc_rows))
    assert scores["descriptive_questions"] == 2 and "descriptive_score" in scores
