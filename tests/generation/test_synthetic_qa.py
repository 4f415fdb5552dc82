"""The quality gate: structural checks in code, the judge's score, retries, and de-duplication."""

import json

import pandas as pd
import pytest

from fsku_kedro.generation.backends import Completion
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.generation.synthetic_qa import (
    ItemRejected,
    build_item,
    near_duplicates,
    parse_item,
    parse_score,
)
from fsku_kedro.parameters.generation import SamplingSettings
from fsku_kedro.parameters.response_generation import SyntheticQASettings
from fsku_kedro.pipelines.response_generation.nodes import quality_gate
from tests.conftest import PROJECT_ROOT

TEMPLATES = {p.stem: p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "data/01_raw/prompts").glob("*.txt")}
GATE = SyntheticQASettings(writer=SamplingSettings(max_new_tokens=64), judge=SamplingSettings(max_new_tokens=4))


def mc(question, options, answer):
    return json.dumps({"question": question, "options": options, "answer": answer}, ensure_ascii=False)


class ScriptedTeacher:
    """Stands in for the teacher LLM with fixed outputs (tiny test models cannot write valid JSON):
    ``writes`` maps a context to its successive writer outputs, ``scores`` a question to its score."""

    model_name = "scripted"

    def __init__(self, writes, scores):
        self.writes = {context: list(outputs) for context, outputs in writes.items()}
        self.scores = scores
        self.calls = 0

    def generate(self, chats, params):
        self.calls += 1
        completions = []
        for chat in chats:
            content = chat[-1]["content"]
            if content.startswith("다음 시험 문제를"):
                score = next(s for q, s in self.scores.items() if q in content)
                text = str(score)
            else:
                context = next(c for c in self.writes if c in content)
                text = self.writes[context].pop(0)
            completions.append(Completion(text, "stop", 10, 5))
        return completions


def plan(context, kind="multiple_choice"):
    return {"chunk_id": f"c-{context}", "context": context, "type": kind, "options": 4}


def test_structural_checks():
    with pytest.raises(ItemRejected, match="not one of the options"):
        build_item(json.loads(mc("질문?", ["a", "b", "c", "d"], 5)), "multiple_choice", "q", ["c"], "t")
    with pytest.raises(ItemRejected, match="duplicate options"):
        build_item(json.loads(mc("질문?", ["a", "b", "b", "d"], 1)), "multiple_choice", "q", ["c"], "t")
    with pytest.raises(ItemRejected, match="4 or 5 options"):
        build_item(json.loads(mc("질문?", ["a", "b"], 1)), "multiple_choice", "q", ["c"], "t")
    with pytest.raises(ItemRejected, match="no JSON object"):
        parse_item("문제를 만들 수 없습니다")
    with pytest.raises(ItemRejected, match="invalid JSON"):
        parse_item('{"question": "x", options: [}')
    item = build_item(parse_item("다음과 같습니다: " + mc("질문?", ["1. 가", "2) 나", "다", "라"], "2") + " 끝"),
                      "multiple_choice", "q", ["c"], "t")
    assert item.choices == {"1": "가", "2": "나", "3": "다", "4": "라"} and item.answer == "2"
    described = build_item({"question": "설명?", "answer": "답.", "keywords": ["망분리"]}, "descriptive", "q", ["c"], "t")
    assert described.keywords == ["망분리"] and described.choices is None


def test_scores_and_near_duplicates():
    assert parse_score("8") == 8.0 and parse_score("점수: 9.5점") == 9.5 and parse_score("10") == 10.0
    assert parse_score("없음") is None and parse_score("12") is None
    questions = [
        "전자금융업자가 금융위원회에 등록할 때 갖추어야 하는 최소 자본금은 얼마인가?",
        "전자금융업자가 금융위원회에 등록할 때 갖추어야 하는 최소 자본금은 얼마인가요?",
        "암호키를 관리할 때 지켜야 하는 원칙은 무엇인가?",
    ]
    assert near_duplicates(questions, 0.8) == {1}


def test_gate_accepts_retries_and_drops_with_reasons(tmp_path):
    good = mc("전자금융업 등록 자본금은?", ["1억 원", "3억 원", "5억 원", "7억 원"], 2)
    fixed = mc("접근매체 분실 시 의무는?", ["신고", "방치", "양도", "대여"], 1)
    weak = mc("약한 문제?", ["가", "나", "다", "라"], 3)
    duplicate = mc("전자금융업 등록 자본금은?", ["2억 원", "3억 원", "4억 원", "6억 원"], 2)
    teacher = ScriptedTeacher(
        writes={
            "문서A": [good],
            "문서B": ["JSON이 아님", fixed],  # fails structure once, passes on the retry
            "문서C": [weak, weak],  # judged too low twice
            "문서D": [mc("답이 없는 문제?", ["가", "나", "다", "라"], 9), "{}"],  # never valid
            "문서E": [duplicate],
        },
        scores={"전자금융업 등록": 9, "접근매체 분실": 8, "약한 문제": 3},
    )
    items, report = quality_gate([plan(c) for c in ["문서A", "문서B", "문서C", "문서D", "문서E"]], teacher, TEMPLATES, GATE,
                                 ResponseStore(tmp_path / "gate.jsonl"))
    outcomes = dict(zip(report["outcome"], report["items"]))
    assert sorted(items["question"]) == ["전자금융업 등록 자본금은?", "접근매체 분실 시 의무는?"]
    assert outcomes["accepted"] == 2
    assert outcomes["dropped (judge: score below threshold)"] == 1
    assert outcomes["dropped (structure: empty question)"] == 1
    assert outcomes["dropped (near-duplicate question)"] == 1
    assert (items["overall_quality_score"] >= 7.0).all()
    assert all(answer in choices for answer, choices in zip(items["answer"], items["choices"]))


def test_gate_on_a_real_tiny_model_counts_every_item(tiny_llama_dir, tmp_path):
    from fsku_kedro.generation.backends import TransformersBackend
    from fsku_kedro.models import ModelBundle
    from fsku_kedro.models.sources import load_causal_lm, load_tokenizer

    bundle = ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny")
    plans = [plan("문서 하나"), plan("문서 둘", "descriptive")]
    backend = TransformersBackend(bundle, batch_size=8, cache_implementation="static", show_progress=False)
    items, report = quality_gate(plans, backend, TEMPLATES, GATE, ResponseStore(tmp_path / "gate.jsonl"))
    assert report["items"].sum() == len(plans) + report.set_index("outcome")["items"].get(
        "dropped (near-duplicate question)", 0)
    assert isinstance(items, pd.DataFrame)


class KilledAfter(ScriptedTeacher):
    """A scripted teacher whose process dies (KeyboardInterrupt) at its ``limit``-th generate call."""

    def __init__(self, writes, scores, limit):
        super().__init__(writes, scores)
        self.limit = limit

    def generate(self, chats, params):
        if self.calls + 1 >= self.limit:
            raise KeyboardInterrupt
        return super().generate(chats, params)


def test_a_killed_gate_resumes_with_the_decided_plans_kept(tmp_path):
    contexts = [f"문서{n}" for n in range(6)]
    items = {c: mc(f"{c}의 핵심 의무는?", ["가", "나", "다", "라"], 1) for c in contexts}
    scores = {f"{c}의 핵심": 9 for c in contexts}
    plans = [plan(c) for c in contexts]
    store = ResponseStore(tmp_path / "synthetic_qa.progress.jsonl")
    # Two plans per save: write + judge for the first pair, write + judge for the second, then killed.
    killed = KilledAfter({c: [items[c]] for c in contexts}, scores, limit=5)
    with pytest.raises(KeyboardInterrupt):
        quality_gate(plans, killed, TEMPLATES, GATE, store, plans_per_save=2)
    assert len(store.path.read_text(encoding="utf-8").splitlines()) == 4

    resumed = ScriptedTeacher({c: [items[c]] for c in contexts[4:]}, scores)  # no output left for the first four
    kept, report = quality_gate(plans, resumed, TEMPLATES, GATE, store, plans_per_save=2)
    assert resumed.calls == 2  # one write and one judge call for the last pair only
    fresh, fresh_report = quality_gate(plans, ScriptedTeacher({c: [items[c]] for c in contexts}, scores), TEMPLATES,
                                       GATE, ResponseStore(tmp_path / "fresh.jsonl"))
    pd.testing.assert_frame_equal(kept, fresh)
    pd.testing.assert_frame_equal(report, fresh_report)
    assert dict(zip(report["outcome"], report["items"]))["accepted"] == 6

    stricter = GATE.model_copy(update={"min_judge_score": 9.5, "max_regenerations": 0})  # other settings: none reused
    again = ScriptedTeacher({c: [items[c]] for c in contexts}, scores)
    kept, report = quality_gate(plans, again, TEMPLATES, stricter, store, plans_per_save=2)
    assert again.calls == 6 and kept.empty
    assert dict(zip(report["outcome"], report["items"]))["dropped (judge: score below threshold)"] == 6
    dropped = [json.loads(line) for line in store.path.read_text(encoding="utf-8").splitlines()][-6:]
    assert [record["last_output"] for record in dropped] == [items[c] for c in contexts]
