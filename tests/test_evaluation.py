"""The FSKU metric on hand-computed examples, and choice scoring on a tiny model."""

import numpy as np
import pytest
import torch

from fsku_kedro.answering.choice_scoring import option_token_ids, score_choices
from fsku_kedro.evaluation.fsku_score import DescriptiveItem, descriptive_scores, fsku_score, keyword_recall
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer


def test_keyword_recall_ignores_spacing_and_case():
    assert keyword_recall("전자 금융거래법에 따라 OTP를 사용한다", ["전자금융거래법", "otp", "망분리"]) == pytest.approx(2 / 3)
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
    model = load_causal_lm(str(tiny_llama_dir))
    bundle = ModelBundle(model, tokenizer, "tiny")
    chats = [[{"role": "user", "content": f"다음 중 옳은 것은?\n1 가\n2 나\n3 다\n4 라{'?' * i}"}] for i in range(3)]
    counts = [4, 2, 4]
    choices = score_choices(bundle, chats, counts, batch_size=2)
    for chat, count, choice in zip(chats, counts, choices):
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            last = model(ids).logits[0, -1]
        option_logits = last[option_token_ids(tokenizer, count)]
        assert choice.number == int(option_logits.argmax()) + 1
        assert choice.confidence == pytest.approx(float(torch.softmax(option_logits, -1).max()), abs=1e-4)
        assert set(choice.probabilities) == set(range(1, count + 1))
    with pytest.raises(ValueError, match="one option count per chat"):
        score_choices(bundle, chats, [4])
