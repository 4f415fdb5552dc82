"""Choice scoring with option numbers of one and of several tokens, against a direct computation."""

import math

import pytest
import torch

from fsku_kedro.answering.choice_scoring import needed_tokens, option_token_sequences, score_choices


def _log_prob_of(model, prompt_ids, continuation):
    """log P(continuation | prompt) and the next-token distribution after it, by teacher forcing."""
    ids = torch.tensor([prompt_ids + list(continuation)])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    start = len(prompt_ids) - 1
    total = sum(float(log_probs[start + j, token]) for j, token in enumerate(continuation))
    return total, log_probs[-1]


def test_ten_options_score_the_exact_number_written(digit_bundle):
    tokenizer, model = digit_bundle.tokenizer, digit_bundle.model
    sequences = option_token_sequences(tokenizer, 10)
    assert len(sequences[9]) == 2 and sequences[9][0] == sequences[0][0], "'10' is '1' followed by '0'"
    assert needed_tokens(sequences)[sequences[0]] == {sequences[9][1]}, "after '1', only '0' continues an option"

    options = "\n".join(f"{n} 선택지{n}" for n in range(1, 11))
    chats = [[{"role": "user", "content": f"다음 중 옳은 것은?{'?' * i}\n{options}"}] for i in range(3)]
    choices = score_choices(digit_bundle, chats, [10, 10, 10], batch_size=2)
    for chat, choice in zip(chats, choices):
        prompt = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False)["input_ids"]
        expected = []
        for number, sequence in enumerate(sequences, start=1):
            score, after = _log_prob_of(model, prompt, sequence)
            if number == 1:  # "1" alone: the model must not go on to write "10"
                score += math.log(1.0 - math.exp(float(after[sequences[9][1]])))
            expected.append(score)
        probabilities = torch.softmax(torch.tensor(expected, dtype=torch.float64), dim=-1)
        assert choice.number == int(probabilities.argmax()) + 1
        for number in range(1, 11):
            assert choice.probabilities[number] == pytest.approx(float(probabilities[number - 1]), abs=1e-4)
        assert sum(choice.probabilities.values()) == pytest.approx(1.0)


def test_up_to_nine_options_take_one_forward_pass(digit_bundle):
    calls = []
    model = digit_bundle.model
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        score_choices(digit_bundle, [[{"role": "user", "content": "질문?\n1 가\n2 나\n3 다\n4 라"}]] * 3, [4, 4, 4],
                      batch_size=8)
        assert len(calls) == 1, "three 4-option questions fit one batch of one forward pass"
        calls.clear()
        score_choices(digit_bundle, [[{"role": "user", "content": "질문?"}]], [10], batch_size=8)
        assert len(calls) == 1, "the '1' prefix row rides in the same batch"
    finally:
        handle.remove()
