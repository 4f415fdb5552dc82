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


def _forward_calls(model):
    """The (rows, positions) of each forward pass of ``model``, and the hook's handle."""
    calls = []
    handle = model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    return calls, handle


def test_up_to_nine_options_take_one_row(digit_bundle):
    calls, handle = _forward_calls(digit_bundle.model)
    try:
        chats = [[{"role": "user", "content": "질문?\n1 가\n2 나\n3 다\n4 라"}]] * 3
        score_choices(digit_bundle, chats, [4, 4, 4], batch_size=8, share_prefix=False)
        assert [rows for rows, _ in calls] == [3], "three 4-option questions fit one batch of one forward pass"
        calls.clear()
        score_choices(digit_bundle, [[{"role": "user", "content": "질문?"}]], [10], batch_size=8, share_prefix=False)
        assert [rows for rows, _ in calls] == [2], "the '1' prefix row rides in the same batch"
        calls.clear()
        # Shared: the common prompt once, then each row's last token on its cache.
        score_choices(digit_bundle, chats, [4, 4, 4], batch_size=8, share_prefix=True)
        assert calls[0][0] == 1 and calls[1] == (3, 1)
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def digit_qwen(digit_bundle):
    """A tiny Qwen2 (the teacher's architecture: biased q/k/v projections) on the digit tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from fsku_kedro.models.bundle import ModelBundle

    torch.manual_seed(2)
    tokenizer = digit_bundle.tokenizer
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)
    return ModelBundle(Qwen2ForCausalLM(config).eval(), tokenizer, "digit-qwen2")


@pytest.mark.parametrize("model", ["digit_bundle", "digit_qwen"])
def test_rotations_share_their_prefix_and_score_as_alone(model, request):
    from fsku_kedro.answering.debias import rotated
    from fsku_kedro.questions import parse_question

    bundle = request.getfixturevalue(model)
    questions = [parse_question("a", "전자금융거래법상 접근매체가 아닌 것은?\n1 전자식 카드\n2 공인인증서\n3 생체정보\n4 사원증"),
                 parse_question("b", "개인정보의 안전성 확보 조치로 옳은 것은?\n1 암호화\n2 공개\n3 방치\n4 양도\n5 삭제 금지"),
                 parse_question("c", "옳은 것은?\n" + "\n".join(f"{n} 선택지 {n}번" for n in range(1, 11)))]
    shown = [rotated(q, shift)[0] for q in questions for shift in range(len(q.choices))]
    chats = [[{"role": "user", "content": q.Question}] for q in shown]
    counts = [len(q.choices) for q in shown]
    calls, handle = _forward_calls(bundle.model)
    try:
        alone = score_choices(bundle, chats, counts, batch_size=8, share_prefix=False)
        plain = sum(rows * width for rows, width in calls)
        calls.clear()
        shared = score_choices(bundle, chats, counts, batch_size=8, share_prefix=True)
        positions = sum(rows * width for rows, width in calls)
    finally:
        handle.remove()
    for a, b in zip(alone, shared):
        assert a.number == b.number
        assert b.probabilities == pytest.approx(a.probabilities, abs=1e-5)
    assert positions < 0.75 * plain, (positions, plain)


def test_batches_group_rows_that_begin_alike():
    from fsku_kedro.answering.choice_scoring import row_batches

    head = list(range(100, 120))
    first = [head + [1, 2, 3, 4, 5, 6, 7, 8, 9] + tail for tail in ([10, 11], [11, 10], [12, 13, 14])]
    second = [head + [50, 51] + tail for tail in ([60], [61])]
    batches = row_batches([*first, *second], batch_size=8, share_prefix=True)
    assert sorted(sorted(rows) for rows, _ in batches) == [[0, 1, 2], [3, 4]]
    assert sorted(shared for _, shared in batches) == [22, 29]
    assert row_batches([*first, *second], batch_size=2, share_prefix=True)[0] == ([0, 1], 29)
    # Unshared: the longest first, batch_size rows a batch.
    assert row_batches([*first, *second], batch_size=2, share_prefix=False) == [([2, 0], 0), ([1, 3], 0), ([4], 0)]
