"""The FSKU metric on hand-computed examples, and choice scoring on a tiny model."""

import numpy as np
import pytest
import torch

from fsku_kedro.answering.choice_scoring import option_token_sequences, score_choices
from fsku_kedro.contracts import LabelledAnswer, SubmissionRow
from fsku_kedro.evaluation.fsku_score import DescriptiveItem, descriptive_scores, fsku_score, keyword_recall
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer


def test_keyword_recall_follows_the_benchmark_scorers_rule():
    # FSKU-benchmark's scorer: case ignored; a keyword is a substring, or each of its words is.
    answer = "금융회사는 자본금을 차등화하고 OTP를 사용하며 업무 연속성 계획을 세운다"
    assert keyword_recall(answer, ["자본금 차등화"]) == 1.0, "every word of a spaced keyword is in the text"
    assert keyword_recall(answer, ["otp"]) == 1.0, "case is ignored"
    assert keyword_recall(answer, ["업무연속성"]) == 0.0, "a keyword without spaces must appear as written"
    assert keyword_recall(answer, ["차등화 망분리"]) == 0.0, "one word missing: not found"
    assert keyword_recall(answer, ["자본금 차등화", "망분리", " "]) == pytest.approx(1 / 2), "blank keywords are dropped"
    assert keyword_recall("아무 답", []) == 1.0
    assert keyword_recall("", ["접근매체"]) == 0.0


def test_fsku_score_by_hand():
    # MC: 3 of 4 right. Descriptive: cosines 0.8 and 0.4, recalls 0.5 and 1.0.
    parts = fsku_score([True, True, False, True], np.array([0.8, 0.4]), np.array([0.5, 1.0]))
    assert parts["mc_accuracy"] == 0.75
    assert parts["descriptive_score"] == pytest.approx(0.6 * 0.6 + 0.4 * 0.75)  # 0.66
    assert parts["fsku_score"] == pytest.approx(0.5 * 0.75 + 0.5 * 0.66)
    assert fsku_score([True, False], np.zeros(0), np.zeros(0))["fsku_score"] == 0.5
    assert fsku_score([], np.array([1.0]), np.array([0.0]))["fsku_score"] == pytest.approx(0.6)


def test_descriptive_scores_use_the_embedder(tiny_embedder):
    items = [
        DescriptiveItem("전자금융거래법은 접근매체를 규정한다", "전자금융거래법은 접근매체를 규정한다", ["접근매체"]),
        DescriptiveItem("", "망분리는 내부망과 외부망을 나눈다", ["망분리"]),
    ]
    cosine, recall = descriptive_scores(tiny_embedder, items)
    assert cosine[0] == pytest.approx(1.0, abs=1e-5), "an identical answer has cosine 1"
    assert cosine[1] == 0.0, "an empty answer scores 0"
    assert recall.tolist() == [1.0, 0.0]


def test_choice_scoring_reads_the_option_logits_at_the_answer_position(tiny_llama_dir):
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    model = load_causal_lm(str(tiny_llama_dir), dtype="float32")  # batched vs direct: no bf16 rounding
    bundle = ModelBundle(model, tokenizer, "tiny")
    chats = [[{"role": "user", "content": f"다음 중 옳은 것은?\n1 가\n2 나\n3 다\n4 라{'?' * i}"}] for i in range(3)]
    counts = [4, 2, 4]
    choices = score_choices(bundle, chats, counts, batch_size=2)
    for chat, count, choice in zip(chats, counts, choices):
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            last = model(ids).logits[0, -1]
        option_logits = last[[s[0] for s in option_token_sequences(tokenizer, count)]]
        assert choice.number == int(option_logits.argmax()) + 1
        assert choice.confidence == pytest.approx(float(torch.softmax(option_logits, -1).max()), abs=1e-4)
        assert set(choice.probabilities) == set(range(1, count + 1))
    with pytest.raises(ValueError, match="one option count per chat"):
        score_choices(bundle, chats, [4], batch_size=2)


def _answers(ids, texts, fallbacks=None) -> list[SubmissionRow]:
    fallbacks = fallbacks or [False] * len(ids)
    # model_construct: an empty answer (which the answering loop never returns) still scores 0 here.
    return [SubmissionRow.model_construct(ID=i, answer=a, confidence=0.5, inference_time=0.0, used_fallback=f,
                                          question_type="descriptive" if i.startswith("D") else "multiple_choice",
                                          method="test", fallback_reason="")
            for i, a, f in zip(ids, texts, fallbacks)]


def _labels(ids, answers, domains, keywords=None) -> list[LabelledAnswer]:
    keywords = keywords or [""] * len(ids)
    return [LabelledAnswer(ID=i, question_type="descriptive" if i.startswith("D") else "multiple_choice", answer=a,
                           domain=d, keywords=k) for i, a, d, k in zip(ids, answers, domains, keywords)]


def test_per_domain_report_by_hand(tiny_embedder):
    from fsku_kedro.evaluation.answer_report import answer_report, report_metrics, score_items
    from fsku_kedro.questions import parse_question

    options = "\n1 가\n2 나\n3 다\n4 라"
    questions = [parse_question(f"M{i}", f"문제{i}?{options}") for i in range(4)]
    questions += [parse_question("D0", "망분리를 설명하세요."), parse_question("D1", "암호화를 설명하세요.")]
    answers = _answers(["M0", "M1", "M2", "M3", "D0", "D1"], ["1", "2", "3", "3", "망분리는 내부망과 외부망을 분리한다", ""],
                       [False, False, False, True, False, True])
    labels = _labels(["M0", "M1", "M2", "M3", "D0", "D1", "UNANSWERED"],
                     ["1", "2", "4", "4", "망분리는 내부망과 외부망을 분리한다", "암호화는 기밀성을 지킨다", "1"],
                     ["법률", "법률", "IT", "IT", "법률", "IT", "IT"], ["", "", "", "", "망분리;외부망;인터넷", "암호화", ""])
    items = score_items(answers, questions, labels, tiny_embedder)
    assert len(items) == 6, "labels without a question or answer are not scored"
    report = answer_report(items).set_index("domain")
    # all: MC 2/4 = 0.5; descriptive cosine (1 + 0) / 2, keyword recall (2/3 + 0) / 2.
    descriptive = 0.6 * 0.5 + 0.4 * (1 / 3)
    assert report.loc["all", "mc_accuracy"] == pytest.approx(0.5)
    assert report.loc["all", "descriptive_score"] == pytest.approx(descriptive, abs=1e-5)
    assert report.loc["all", "fsku_score"] == pytest.approx(0.5 * 0.5 + 0.5 * descriptive, abs=1e-5)
    assert report.loc["법률", "fsku_score"] == pytest.approx(0.5 * 1.0 + 0.5 * (0.6 + 0.4 * 2 / 3), abs=1e-5)
    assert report.loc["IT", "fsku_score"] == pytest.approx(0.0, abs=1e-6)
    assert report.loc["all", "fallback_share"] == pytest.approx(2 / 6)
    assert report_metrics(report.reset_index())["fsku_score"]["value"] == pytest.approx(report.loc["all", "fsku_score"])


def test_fsku_benchmark_tables_and_a_fixed_slice():
    import pandas as pd

    from fsku_kedro.contracts import DataContractError
    from fsku_kedro.evaluation.fsku_benchmark import benchmark_set, benchmark_tables
    from fsku_kedro.parameters.inference import BenchmarkSliceSettings

    every = BenchmarkSliceSettings(mc_limit=None, descriptive_limit=None)

    mc = pd.DataFrame({"Domain": ["법률", "IT", "IT"], "Sub_domain": ["a", "b", "c"],
                       "Question": [f"문제{i}?\n1 가\n2 나\n3 다\n4 라" for i in range(3)]})
    answers = pd.DataFrame({"Answer": ["2", "4", "1"]})
    descriptive = pd.DataFrame({"Question": ["설명하세요."], "Answer": ["답"], "Keyword": ["BCP, 업무 연속성"]})
    questions, labels = benchmark_tables(mc, answers, descriptive, every)
    assert list(questions["ID"]) == ["FSKU_MC_0000", "FSKU_MC_0001", "FSKU_MC_0002", "FSKU_DESC_000"]
    assert labels.set_index("ID").loc["FSKU_MC_0001", "answer"] == "4"
    assert labels.set_index("ID").loc["FSKU_DESC_000", "keywords"] == "BCP;업무 연속성"
    sliced = BenchmarkSliceSettings(mc_limit=2, seed=3)
    first, _ = benchmark_tables(mc, answers, descriptive, sliced)
    again, _ = benchmark_tables(mc, answers, descriptive, sliced)
    assert len(first) == 3 and list(first["ID"]) == list(again["ID"]), "the slice is fixed by the seed"
    many = pd.DataFrame({"Domain": "IT", "Sub_domain": "a", "Question": [f"문제{i}?\n1 가\n2 나" for i in range(30)]})
    many_answers = pd.DataFrame({"Answer": ["1"] * 30})
    slices = [set(benchmark_tables(many, many_answers, descriptive, BenchmarkSliceSettings(mc_limit=10, seed=seed))[0]
                  ["ID"]) for seed in (0, 1)]
    assert slices[0] != slices[1], "another seed, another slice"
    assert all(len(ids) == 10 + 1 for ids in slices), "10 multiple-choice questions and the descriptive one"
    with pytest.raises(DataContractError, match="3 multiple-choice questions but 2 answers"):
        benchmark_tables(mc, answers.iloc[:2], descriptive, every)
    parsed, label_records = benchmark_set(mc, answers, descriptive, every)
    assert [q.question_type for q in parsed] == ["multiple_choice"] * 3 + ["descriptive"]
    assert label_records[-1].keywords == ["BCP", "업무 연속성"] and label_records[0].domain == "법률"


def test_answer_distribution_counts_option_shares_per_domain():
    from fsku_kedro.evaluation.answer_report import answer_distribution_figure
    from fsku_kedro.questions import parse_question

    questions = [parse_question(f"M{i}", f"문제{i}?\n1 가\n2 나\n3 다") for i in range(3)]
    answers = _answers(["M0", "M1", "M2"], ["2", "2", "1"])
    labels = _labels(["M0", "M1", "M2"], ["1", "2", "3"], ["법률", "법률", "IT"])
    figure = answer_distribution_figure(answers, questions, labels)
    heights = [round(patch.get_height(), 3) for patch in figure.axes[0].patches]
    # Bars per option 1, 2, 3, each over the domains (IT, 법률); the given answers first, then the key.
    assert heights == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0,   # given: IT chose 1, 법률 chose 2 twice
                       0.0, 0.5, 0.0, 0.5, 1.0, 0.0]   # key: 법률 is 1 and 2, IT is 3
    empty = answer_distribution_figure([], [], [])
    assert not empty.axes[0].patches, "no answers: an empty chart, not an error"
