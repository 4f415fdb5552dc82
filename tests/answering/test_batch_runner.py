"""Answering a question set: valid answers for every ID, fallbacks on time, errors and budget, and resume."""

import math

import pytest
import torch

from fsku_kedro.answering import mc_strategy
from fsku_kedro.answering.batch_runner import BatchAnswerer, answer_questions, batches
from fsku_kedro.answering.fallback_policy import fallback_counts
from fsku_kedro.answering.prompts import PreparedQuestion
from fsku_kedro.contracts import Passage
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.generation import GenerationSettings
from fsku_kedro.parameters.inference import InferenceSettings, TimeLimitSettings
from fsku_kedro.questions import parse_question
from tests.conftest import PROJECT_ROOT

TEMPLATES = {p.stem: p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "data/01_raw/prompts").glob("*.txt")}
PASSAGE = Passage("c1", 1.0, "전자금융거래법에 따라 금융회사는 2주 이내에 처리 결과를 알려야 한다. 접근매체는 전자식 카드를 포함한다.")
GENERATION = GenerationSettings(batch_size=4, max_new_tokens=4)


def _items(mc=7):
    options = "\n1 즉시\n2 1주 이내\n3 2주 이내\n4 1개월 이내"
    items = [PreparedQuestion(parse_question(f"Q{i:02d}", f"오류 정정 결과의 통지 기한은?{' 추가' * i}{options}"),
                              (PASSAGE,)) for i in range(mc)]
    ten = "\n".join(f"{n} 보기{n}" for n in range(1, 11))
    items.append(PreparedQuestion(parse_question("Q_TEN", f"열 개 중 고르시오.\n{ten}"), (PASSAGE,)))
    items += [PreparedQuestion(parse_question(f"D{i}", f"접근매체의 의미를 설명하세요{'.' * i}"), (PASSAGE,))
              for i in range(2)]
    return items


def _settings(per_question_s=60.0, budget_minutes=270.0, batch_size=2, **changes):
    return InferenceSettings(batch_size=batch_size, max_context_chars=1500, generation=GENERATION, **changes,
                             time_limit=TimeLimitSettings(per_question_s=per_question_s, budget_minutes=budget_minutes))


def _valid(items, rows):
    assert [row.ID for row in rows] == [item.question.ID for item in items], "input order"
    for item, row in zip(items, rows):
        if item.question.question_type == "multiple_choice":
            assert row.answer in item.question.choices
        else:
            assert row.answer.strip()
        assert row.inference_time >= 0.0
        if row.method in ("choice_scoring", "fallback_closed_book", "generate"):
            assert 0.0 <= row.confidence <= 1.0, "a measured probability"
        elif row.method in ("generate_extract", "fallback_extractive"):
            assert row.confidence is None, "nothing measured, no confidence"


def test_every_question_is_answered_by_the_model(bundle):
    items = _items()
    rows = answer_questions(items, bundle, TEMPLATES, _settings(), show_progress=False)
    _valid(items, rows)
    mc = [row for row in rows if row.question_type == "multiple_choice"]
    assert {(row.method, row.used_fallback) for row in mc} == {("choice_scoring", False)}
    for row in rows:
        if row.question_type == "descriptive":  # a random tiny model may write nothing readable
            assert (row.method, row.fallback_reason) in {("generate", ""), ("fallback_extractive", "empty_answer")}


def test_batches_put_descriptive_first_and_longest_prompts_first():
    items = _items()
    plan = batches(items, TEMPLATES, _settings())
    assert [items[i].question.ID for i in plan[0]] == ["D1", "D0"]
    mc_order = [items[i].question.ID for group in plan[1:] for i in group]
    assert mc_order[:2] == ["Q_TEN", "Q06"] and sorted(mc_order) == sorted(f"Q{i:02d}" for i in range(7)) + ["Q_TEN"]


def test_a_question_over_its_time_limit_gets_the_fallback(bundle):
    items = _items()
    rows = answer_questions(items, bundle, TEMPLATES, _settings(per_question_s=1e-9), show_progress=False)
    _valid(items, rows)
    assert all(row.used_fallback and row.fallback_reason == "time_limit" for row in rows)
    assert {row.method for row in rows} == {"fallback_closed_book", "fallback_extractive"}
    descriptive = [row for row in rows if row.question_type == "descriptive"]
    assert all("2주 이내" in row.answer or "접근매체" in row.answer for row in descriptive)


class BrokenModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    def generate(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory")


def test_a_model_error_gives_retrieval_overlap_and_extractive_answers(bundle):
    items = _items()
    broken = ModelBundle(BrokenModel(), bundle.tokenizer, "broken")
    broken.model.generation_config = bundle.model.generation_config
    rows = answer_questions(items, broken, TEMPLATES, _settings(), show_progress=False)
    _valid(items, rows)
    assert all(row.used_fallback and row.fallback_reason == "model_error" for row in rows)
    mc = [row for row in rows if row.question_type == "multiple_choice" and row.ID != "Q_TEN"]
    assert {row.answer for row in mc} == {"3"}, "the option that appears in the passage"
    assert {row.method for row in mc} == {"fallback_overlap"}
    assert all(0.0 < row.confidence <= 1.0 for row in mc), "the option's share of the overlap"
    ten = next(row for row in rows if row.ID == "Q_TEN")
    assert ten.confidence is None, "no option overlaps the passage: nothing measured"
    assert fallback_counts(rows) == {"model_error": len(rows)}


def test_a_programming_error_stops_the_run_instead_of_falling_back(bundle, monkeypatch):
    def defective(*args, **kwargs):
        raise TypeError("score_choices() got an unexpected keyword argument")

    monkeypatch.setattr(mc_strategy, "score_choices", defective)
    with pytest.raises(TypeError, match="unexpected keyword"):
        answer_questions(_items(mc=2)[:2], bundle, TEMPLATES, _settings(), show_progress=False)


def test_max_fallback_share_fails_a_run_that_falls_back_more(bundle):
    from fsku_kedro.errors import UserInputError
    from fsku_kedro.pipelines.inference.nodes import answer_test_questions

    items = _items()
    broken = ModelBundle(BrokenModel(), bundle.tokenizer, "broken")
    broken.model.generation_config = bundle.model.generation_config
    questions = [item.question for item in items]
    passages = {item.question.ID: item.passages for item in items}
    templates = {name: (lambda text=text: text) for name, text in TEMPLATES.items()}
    with pytest.raises(UserInputError, match=r"10 of 10 questions \(100.0%\) were answered by a fallback "
                                             r"\(model_error 10\), more than inference.max_fallback_share"):
        answer_test_questions(questions, passages, broken, templates, None, _settings(max_fallback_share=0.5))
    rows = answer_test_questions(questions, passages, broken, templates, None, _settings())
    assert len(rows) == 10, "off by default: the fallbacks answer"
    rows = answer_test_questions(questions, passages, bundle, templates, None, _settings(max_fallback_share=0.5))
    assert sum(row.used_fallback for row in rows) <= 5, "a working model stays under the limit"


def test_a_spent_budget_answers_the_rest_without_the_model(bundle):
    calls = []
    handle = bundle.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        rows = answer_questions(_items(), bundle, TEMPLATES, _settings(budget_minutes=0.0), show_progress=False)
    finally:
        handle.remove()
    assert not calls
    assert all(row.used_fallback and row.fallback_reason == "budget_spent" for row in rows)


def test_generate_then_extract_falls_back_when_no_number_is_written(bundle):
    items = _items()
    rows = answer_questions(items, bundle, TEMPLATES, _settings(mc_method="generate"), show_progress=False)
    _valid(items, rows)
    for row in rows:
        if row.question_type == "multiple_choice":
            assert (row.method, row.used_fallback) in {("generate_extract", False), ("fallback_closed_book", True)}
            assert row.used_fallback == (row.fallback_reason == "no_valid_number")


def test_a_killed_run_resumes_without_recomputing_and_matches_an_uninterrupted_one(bundle, tmp_path, monkeypatch):
    items = _items()
    settings = _settings()
    reference = answer_questions(items, bundle, TEMPLATES, settings, show_progress=False)

    real = mc_strategy.score_choices
    calls = []

    def killed_on_third_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    store = ResponseStore(tmp_path / "answers.progress.jsonl")
    monkeypatch.setattr(mc_strategy, "score_choices", killed_on_third_call)
    with pytest.raises(KeyboardInterrupt):
        answer_questions(items, bundle, TEMPLATES, settings, store, show_progress=False)
    finished = store.path.read_text(encoding="utf-8").count("\n")
    assert finished == 2 + 2 + 2, "the descriptive batch and two multiple-choice batches were saved"

    calls.clear()
    monkeypatch.setattr(mc_strategy, "score_choices", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = answer_questions(items, bundle, TEMPLATES, settings, store, show_progress=False)
    assert len(calls) == 2, "only the two unfinished multiple-choice batches are scored again"
    strip = lambda rows: [row.model_dump(exclude={"inference_time"}) for row in rows]  # noqa: E731
    assert strip(resumed) == strip(reference)

    calls.clear()
    assert strip(answer_questions(items, bundle, TEMPLATES, settings, store, show_progress=False)) == strip(reference)
    assert not calls, "a finished set recomputes nothing"


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="mc_method"):
        InferenceSettings(mc_method="vote")
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        InferenceSettings(generation={"max_new_token": 8})


class ScriptedBackend:
    """Returns the given completion texts in order, with a known mean log-probability."""

    model_name = "scripted"

    def __init__(self, texts, mean_logprob=-0.5):
        self.texts, self.mean_logprob = list(texts), mean_logprob

    def generate(self, chats, params, max_time=None):
        from fsku_kedro.generation.backends import Completion

        return [Completion(self.texts.pop(0), "stop", 10, 5, self.mean_logprob) for _ in chats]


def test_degenerate_descriptive_answers_get_the_fallback_with_their_reason(bundle, monkeypatch):
    from fsku_kedro.answering.degenerate import degenerate_reason, repeated_unit

    assert repeated_unit("ercercercercercercerc", 8) == 3 and repeated_unit("망분리는 업무망을 나눈다", 8) is None
    assert degenerate_reason("설명하세요", "가가가가가가가가가가", 5, 8) == "repetitive_answer"
    assert degenerate_reason("설명하세요", "Access media cards", 5, 8) == "no_hangul"
    assert degenerate_reason("Explain", "Access media cards", 5, 8) == ""
    assert degenerate_reason("설명하세요", "예 예", 5, 8) == "too_few_characters"
    texts = ["ercercercercercercercerc", "The answer is the card", "예 예", "접근매체는 전자식 카드와 인증서를 말한다."]
    items = [PreparedQuestion(parse_question(f"D{i}", f"접근매체의 의미를 설명하세요{'.' * i}"), (PASSAGE,))
             for i in range(len(texts))]
    backend = ScriptedBackend(texts)
    monkeypatch.setattr(BatchAnswerer, "backend", lambda self: backend)
    rows = answer_questions(items, bundle, TEMPLATES, _settings(batch_size=4), show_progress=False)
    by_length = dict(zip(sorted(range(4), key=lambda i: -len(items[i].question.Question)), texts))
    outcome = {row.ID: (row.method, row.fallback_reason) for row in rows}
    expected = {"ercercercercercercercerc": "repetitive_answer", "The answer is the card": "no_hangul", "예 예": "too_few_characters"}
    for index, text in by_length.items():
        row = rows[index]
        if text in expected:
            assert outcome[row.ID] == ("fallback_extractive", expected[text]) and row.used_fallback
            assert "접근매체" in row.answer or "2주" in row.answer, "the top passage answers instead"
        else:
            assert outcome[row.ID] == ("generate", "") and row.answer == text
            assert row.confidence == pytest.approx(math.exp(-0.5)), "the geometric mean of its token probabilities"
