"""Position-bias correction on a scripted model with a known prior, and through the answering loop."""

import json

import pytest

from fsku_kedro.answering.debias import cyclic_scores, debiased, estimate_prior, rotated
from fsku_kedro.questions import parse_question

PRIOR = [0.1, 0.2, 0.3, 0.4]  # the scripted model's preference for positions 1..4


PRIOR_5 = [0.3, 0.25, 0.2, 0.15, 0.1]  # the same for five options


def _question(i, right, count=4):
    options = [f"보기{i}-{n}" + (" 정답" if n == right else "") for n in range(1, count + 1)]
    return parse_question(f"Q{i}", "\n".join([f"문제 {i}?", *(f"{n} {t}" for n, t in enumerate(options, 1))]))


def scripted_scorer(questions):
    """Observed probability of position j: prior_j x content(option at j), content 0.3 for the right one."""
    results = []
    for question in questions:
        content = [0.3 if text.endswith("정답") else 0.1 for text in question.choices.values()]
        raw = [p * c for p, c in zip(PRIOR if len(content) == 4 else PRIOR_5, content)]
        results.append({j + 1: value / sum(raw) for j, value in enumerate(raw)})
    return results


def test_rotation_keeps_the_options_and_reports_where_each_went():
    question = _question(0, right=2)
    shifted, order = rotated(question, 1)
    assert order == [2, 3, 4, 1]
    assert list(shifted.choices.values()) == [question.choices[str(n)] for n in order]
    assert shifted.Question.splitlines()[0] == question.parsed_question and shifted.ID == question.ID


def test_the_prior_is_recovered_and_divided_out():
    questions = [_question(i, right=1 + i % 4) for i in range(8)]
    prior = estimate_prior(questions, scripted_scorer)
    assert prior[4] == pytest.approx(PRIOR, abs=1e-9), "rotations cancel the content"
    observed = scripted_scorer([_question(99, right=1)])[0]
    assert max(observed, key=observed.get) == 4, "the raw scores follow the position prior"
    corrected = debiased(observed, prior)
    assert max(corrected, key=corrected.get) == 1 and sum(corrected.values()) == pytest.approx(1.0)
    assert debiased({1: 0.5, 2: 0.5}, prior) == {1: 0.5, 2: 0.5}, "no prior for two options: unchanged"


def test_cyclic_averaging_finds_the_content_answer():
    questions = [_question(i, right=1 + i % 4) for i in range(4)]
    calls = []
    scores = cyclic_scores(questions, lambda qs: calls.append(len(qs)) or scripted_scorer(qs))
    assert calls == [16], "one pass per rotation of each question"
    assert [max(s, key=s.get) for s in scores] == [1, 2, 3, 4]


def test_cyclic_averaging_scores_each_question_once_per_option_five_options_included():
    questions = [_question(0, right=2), _question(1, right=5, count=5), _question(2, right=1, count=5)]
    seen = []
    scores = cyclic_scores(questions, lambda qs: seen.extend(qs) or scripted_scorer(qs))
    for question in questions:
        passes = [q for q in seen if q.ID == question.ID]
        count = len(question.choices)
        assert len(passes) == count, f"{question.ID}: one pass per rotation of its {count} options"
        assert len({tuple(q.choices.values()) for q in passes}) == count, "every rotation is a different order"
        firsts = {q.choices["1"] for q in passes}
        assert firsts == set(question.choices.values()), "each option leads once"
    assert [max(s, key=s.get) for s in scores] == [2, 5, 1], "the content answer despite the position prior"
    assert [len(s) for s in scores] == [4, 5, 5]


@pytest.mark.parametrize("method", ["pride", "cyclic"])
def test_debiased_answering_gives_valid_answers_and_resumes_the_prior(method, bundle, tmp_path):
    from fsku_kedro.answering.batch_runner import answer_questions
    from fsku_kedro.answering.mc_strategy import prior_store
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.parameters.inference import DebiasSettings
    from tests.answering.test_batch_runner import TEMPLATES, _items, _settings, _valid

    items = _items()
    settings = _settings(debias=DebiasSettings(method=method, estimation_questions=3))
    store = ResponseStore(tmp_path / "progress.jsonl")
    rows = answer_questions(items, bundle, TEMPLATES, settings, store, show_progress=False)
    _valid(items, rows)
    assert {row.method for row in rows if row.question_type == "multiple_choice"} == {"choice_scoring"}
    lines = store.path.read_text(encoding="utf-8")
    priors = prior_store(store).path
    assert priors.name == "progress.prior.jsonl"
    assert priors.is_file() == (method == "pride"), "the prior has its own file beside the answers, for a resume"
    assert all("prior" not in json.loads(line) for line in lines.splitlines()), "no sentinel row among the answers"
    kept = priors.read_text(encoding="utf-8") if priors.is_file() else ""
    again = answer_questions(items, bundle, TEMPLATES, settings, store, show_progress=False)
    assert [r.answer for r in again] == [r.answer for r in rows]
    assert store.path.read_text(encoding="utf-8") == lines, "a finished set recomputes nothing"
    if method == "pride":
        store.path.unlink()  # answers lost, prior kept: the resumed run reuses the prior
        answer_questions(items, bundle, TEMPLATES, settings, store, show_progress=False)
        assert priors.read_text(encoding="utf-8") == kept, "the kept prior is read back, not estimated again"
