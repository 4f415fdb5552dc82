"""The debiased multiple-choice target: teacher targets (cyclic average, resumable), the loss, a real
training round on tiny models, and the node that gathers the questions."""

import copy
import math

import pandas as pd
import pytest
import torch

from fsku_kedro.answering.choice_scoring import score_choices
from fsku_kedro.answering.debias import cyclic_scores
from fsku_kedro.distillation.choice_targets import question_of, served_chat, teacher_targets
from fsku_kedro.distillation.choice_trainer import choice_kl, choice_rows, labelled, reorderings, sharpened
from fsku_kedro.distillation.training import train_round
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.parameters.distillation import DistillationSettings
from fsku_kedro.questions import parse_question, shuffled
from tests.distillation.conftest import training_parameters

TEMPLATE = "아래 금융보안 객관식 문제의 정답 번호 하나만 숫자로 답하세요.\n\n$question"
QUESTIONS = [
    parse_question("q1", "전자금융거래법상 접근매체가 아닌 것은?\n1 전자식 카드\n2 공인인증서\n3 생체정보\n4 사원증"),
    parse_question("q2", "개인정보의 안전성 확보 조치로 옳은 것은?\n1 암호화\n2 공개\n3 방치\n4 양도\n5 삭제 금지"),
    parse_question("q3", "전자서명의 효력으로 옳은 것은?\n1 신원 확인\n2 효력 없음\n3 무효"),
]


def test_question_of_reads_the_question_after_the_template_head():
    template = "다음 문제의 정답 번호를 고르세요.\n\n$question"
    assert question_of(template.replace("$question", "문제\n1 가\n2 나"), template) == "문제\n1 가\n2 나"
    assert question_of("다른 형식의 프롬프트", template) is None


def test_shuffled_keeps_the_options_renumbers_them_and_is_seeded():
    question = QUESTIONS[1]
    first, again = shuffled(question, seed=3), shuffled(question, seed=3)
    assert first.Question == again.Question, "same seed, same order"
    assert sorted(first.choices.values()) == sorted(question.choices.values())
    assert list(first.choices) == ["1", "2", "3", "4", "5"] and first.parsed_question == question.parsed_question
    orders = {tuple(shuffled(question, seed).choices.values()) for seed in range(10)}
    assert len(orders) > 1, "the seed changes the order"


def test_choice_kl_is_zero_at_the_target_and_ignores_padded_options():
    target = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.25, 0.25]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    tokens = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])
    logits = torch.full((2, 10), -5.0)
    logits[0, [5, 6, 7]] = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    logits[0, 0] = 50.0  # the padded option's token: must not count
    logits[1, [5, 6, 7, 8]] = 1.0
    assert choice_kl(logits, tokens, mask, target).item() == pytest.approx(0.0, abs=1e-6)
    logits[1, 5] = 3.0
    logits.requires_grad_(True)
    loss = choice_kl(logits, tokens, mask, target)
    expected = 0.5 * sum(0.25 * (math.log(0.25) - lq) for lq in torch.log_softmax(
        torch.tensor([3.0, 1.0, 1.0, 1.0]), dim=0).tolist())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert logits.grad[1, 5] > 0, "the over-confident option is pushed down"


def test_sharpened_targets_keep_their_order_and_one_is_unchanged():
    target = [0.4, 0.3, 0.2, 0.1, 0.0]
    assert sharpened(target, 1.0) == target
    sharp = sharpened(target, 0.5)
    assert sharp == pytest.approx([0.16 / 0.30, 0.09 / 0.30, 0.04 / 0.30, 0.01 / 0.30, 0.0])
    assert sharpened(target, 2.0)[0] < 0.4 < sharp[0], "above 1 flattens, below 1 sharpens"


def _target_row(question, target):
    shown = shuffled(question, 0)
    return {"question_id": shown.ID, "question": shown.Question, "split": "train", "option_count": len(target),
            "prompt": TEMPLATE.replace("$question", shown.Question), "target": target}


def test_other_option_orders_keep_each_options_probability(student):
    row = _target_row(QUESTIONS[1], [0.5, 0.2, 0.15, 0.1, 0.05])
    shown = parse_question("q2", question_of(row["prompt"], TEMPLATE))
    by_text = dict(zip(shown.choices.values(), row["target"]))
    views = reorderings(row, 3)
    assert len(views) == 3 and len({prompt for prompt, _ in views} | {row["prompt"]}) == 4, "all orders differ"
    for prompt, target in views:
        question = parse_question("q2", question_of(prompt, TEMPLATE))
        assert question.parsed_question == shown.parsed_question
        assert dict(zip(question.choices.values(), target)) == by_text, "each option keeps its probability"
    small = _target_row(QUESTIONS[2], [0.6, 0.3, 0.1])
    assert len(reorderings(small, 10)) == 5, "three options have only five other orders"

    frame = pd.DataFrame([row, small])
    rows = choice_rows(frame, student.tokenizer, temperature=1.0, orders=3, label_weight=0.0)
    assert len(rows) == 6 and len(choice_rows(frame, student.tokenizer, temperature=1.0, orders=1,
                                              label_weight=0.0)) == 2
    assert rows[0]["target"] == pytest.approx(row["target"]), "the shown order comes first, unchanged"
    assert len({tuple(r["input_ids"]) for r in rows[:3]}) == 3


def test_the_known_answer_is_mixed_in_and_moves_with_its_option(student):
    assert labelled([0.4, 0.3, 0.2, 0.1], 0, 0.5) == [0.4, 0.3, 0.2, 0.1], "no known answer: the teacher's"
    assert labelled([0.4, 0.3, 0.2, 0.1], 4, 0.0) == [0.4, 0.3, 0.2, 0.1]
    assert labelled([0.4, 0.3, 0.2, 0.1], 4, 0.5) == pytest.approx([0.2, 0.15, 0.1, 0.55])
    row = {**_target_row(QUESTIONS[1], [0.5, 0.2, 0.15, 0.1, 0.05]), "answer": 5}
    answer_text = parse_question("q2", row["question"]).choices["5"]
    known = labelled(row["target"], 5, 1.0)
    views = [(row["prompt"], known), *reorderings({**row, "target": known}, 2)]
    for prompt, target in views:
        question = parse_question("q2", question_of(prompt, TEMPLATE))
        assert question.choices[str(target.index(1.0) + 1)] == answer_text, "the answer keeps its text"
    rows = choice_rows(pd.DataFrame([row]), student.tokenizer, temperature=1.0, orders=3, label_weight=1.0)
    assert [r["target"] for r in rows] == [target for _, target in views]
    teachers = choice_rows(pd.DataFrame([row]), student.tokenizer, temperature=1.0, orders=1, label_weight=0.0)
    assert teachers[0]["target"] == row["target"], "weight 0: the teacher's"


def test_teacher_targets_are_the_cyclic_average_and_a_restart_recomputes_nothing(teacher, tmp_path):
    store = ResponseStore(tmp_path / "targets.progress.jsonl")
    targets = teacher_targets(QUESTIONS, teacher, TEMPLATE, store, {"seed": 0}, batch_size=4, questions_per_save=2)

    def score(batch):
        return [c.probabilities for c in score_choices(teacher, [served_chat(q, TEMPLATE) for q in batch],
                                                       [len(q.choices) for q in batch], batch_size=4)]

    for question, averaged, single in zip(QUESTIONS, cyclic_scores(QUESTIONS, score), score(QUESTIONS)):
        expected = torch.softmax(torch.tensor([averaged[n] for n in sorted(averaged)], dtype=torch.float64), 0)
        # the same passes batched apart: float32 padding noise only
        assert targets[question.ID]["target"] == pytest.approx(expected.tolist(), abs=1e-4)
        assert targets[question.ID]["one_pass"] == pytest.approx([single[n] for n in sorted(single)], abs=1e-4)
    calls = []
    hook = teacher.model.register_forward_hook(lambda *_: calls.append(1))
    again = teacher_targets(QUESTIONS, teacher, TEMPLATE, store, {"seed": 0}, batch_size=4)
    hook.remove()
    assert again == targets and calls == [], "every question is read back from the progress file"
    teacher_targets(QUESTIONS[:1], teacher, TEMPLATE, store, {"seed": 1}, batch_size=4)
    assert len(store.path.read_text(encoding="utf-8").splitlines()) == 4, "other settings are computed anew"
    # A question whose id stays but whose text changed (a corpus question after the corpus changed).
    changed = parse_question("q1", QUESTIONS[2].Question)
    renewed = teacher_targets([changed, *QUESTIONS[1:]], teacher, TEMPLATE, store, {"seed": 0}, batch_size=4)
    assert len(renewed["q1"]["target"]) == 3 and renewed["q2"] == targets["q2"], "only the changed one is recomputed"
    assert len(store.path.read_text(encoding="utf-8").splitlines()) == 5


def _frame(targets: dict, questions) -> pd.DataFrame:
    return pd.DataFrame([
        {"question_id": q.ID, "source": "synthetic", "split": "train", "question": q.Question,
         "prompt": served_chat(q, TEMPLATE)[0]["content"], "option_count": len(q.choices),
         "target": targets[q.ID], "one_pass": targets[q.ID]} for q in questions])


def test_a_choice_target_round_moves_the_student_toward_the_targets(student, tmp_path):
    # Targets far from the untrained student: all mass on one option per question.
    targets = {"q1": [0.0, 0.0, 1.0, 0.0], "q2": [1.0, 0.0, 0.0, 0.0, 0.0], "q3": [0.0, 1.0, 0.0]}
    frame = pd.concat([_frame(targets, QUESTIONS[:2]), _frame(targets, QUESTIONS[2:]).assign(split="validation")])
    _, history = train_round("choice_target", student, student, None, training_parameters(eval_strategy="steps",
                                                                                          eval_steps=3),
                             tmp_path, choice_targets=frame)
    losses = [record["loss"] for record in history if "loss" in record]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert [record["eval_loss"] > 0 for record in history if "eval_loss" in record] == [True], \
        "the validation questions give an eval loss"
    with pytest.raises(ValueError, match="needs the teacher's choice targets"):
        train_round("choice_target", student, student, None, training_parameters(), tmp_path / "none",
                    choice_targets=frame.iloc[0:0])


def test_a_choice_target_round_killed_in_its_second_epoch_resumes_to_the_uninterrupted_adapter(student, tmp_path):
    from fsku_kedro.distillation.merging import extract_adapter
    from fsku_kedro.models.bundle import ModelBundle
    from tests.distillation.test_training import StopAfterSteps

    def fresh():
        return ModelBundle(copy.deepcopy(student.model), student.tokenizer, "s")

    targets = {"q1": [0.0, 0.0, 1.0, 0.0], "q2": [1.0, 0.0, 0.0, 0.0, 0.0], "q3": [0.0, 1.0, 0.0]}
    frame = _frame(targets, QUESTIONS)
    # 3 questions in 2 orders, 2 rows a step: 3 steps an epoch, checkpoints at 4 and at the end (6).
    params = training_parameters(max_steps=-1, num_train_epochs=2, save_steps=4)
    params = params.model_copy(update={"choice_targets": params.choice_targets.model_copy(update={"orders": 2})})
    whole, _ = train_round("choice_target", fresh(), student, None, params, tmp_path / "whole", choice_targets=frame)
    train_round("choice_target", fresh(), student, None, params, tmp_path / "killed", choice_targets=frame,
                extra_callbacks=[StopAfterSteps(3)])
    assert sorted(p.name for p in (tmp_path / "killed").glob("checkpoint-*")) == ["checkpoint-4"]
    resumed, history = train_round("choice_target", fresh(), student, None, params, tmp_path / "killed",
                                   choice_targets=frame)
    assert [r["step"] for r in history if "loss" in r] == [1, 2, 3, 4, 5, 6]
    # A finished round started again loads its last checkpoint and trains nothing.
    again, _ = train_round("choice_target", fresh(), student, None, params, tmp_path / "whole", choice_targets=frame)
    expected = extract_adapter(whole).weights
    for other in (resumed, again):
        got = extract_adapter(other).weights
        assert got.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-5)


def test_the_node_gathers_prompt_set_and_corpus_questions_or_nothing(teacher, tmp_path):
    from fsku_kedro.pipelines.distillation.nodes import teacher_choice_targets

    answer = "다음 금융보안 객관식 문제의 정답 번호를 고르고, 그 이유를 한두 문장으로 설명하세요.\n\n$question"
    templates = {"answer_multiple_choice": lambda: answer, "closed_book_multiple_choice": lambda: TEMPLATE}
    prompt_set = pd.DataFrame({
        "prompt_id": ["p1", "p2", "p3"], "source": ["synthetic", "sample", "synthetic"],
        "question_type": ["multiple_choice", "multiple_choice", "descriptive"], "split": ["train", "validation", "train"],
        "prompt": [answer.replace("$question", QUESTIONS[0].Question), answer.replace("$question", QUESTIONS[1].Question),
                   "전자금융의 장점을 설명하세요."],
        "reference": ["", "", ""]})
    chunks = pd.DataFrame({
        "doc_id": ["a", "b", "c"], "title": ["전자금융거래법", "개인정보 보호법", "전자서명법"],
        "content": ["금융회사는 전자금융거래의 안전성을 확보하여야 한다. 이용자는 접근매체를 양도하여서는 아니 된다.",
                    "개인정보처리자는 개인정보를 안전하게 관리하여야 한다. 정보주체는 열람을 요구할 수 있다.",
                    "전자서명은 서명자의 신원을 확인하는 데 쓰인다. 인증사업자는 인증업무준칙을 게시하여야 한다."]})
    store = ResponseStore(tmp_path / "progress.jsonl")
    unused = teacher_choice_targets(prompt_set, chunks, teacher, templates, store, DistillationSettings())
    assert unused.empty and not store.path.exists(), "no choice_target round: no teacher pass"
    settings = DistillationSettings(schedule=[{"loss": "seqkd"}, {"loss": "choice_target"}],
                                    choice_targets={"corpus_questions": 3})
    frame = teacher_choice_targets(prompt_set, chunks, teacher, templates, store, settings)
    assert frame["source"].tolist() == ["synthetic", "sample", "corpus", "corpus", "corpus"]
    assert frame["split"].tolist()[:2] == ["train", "validation"]
    assert frame["option_count"].tolist() == [4, 5, 4, 4, 4]
    contents = dict(zip(chunks["title"], chunks["content"]))
    for row in frame.itertuples():
        if row.source != "corpus":
            assert row.answer == 0, "the prompt set's items carry no known answer"
            continue
        asked = next(content for title, content in contents.items() if title in row.question.split("\n")[0])
        assert parse_question("q", row.question).choices[str(row.answer)] in asked, \
            "the known answer is a sentence of the chunk asked about, under its shuffled number"
    for row in frame.itertuples():
        assert sum(row.target) == pytest.approx(1.0) and row.prompt.startswith(TEMPLATE.split("$")[0])
    shown = parse_question("p1", frame.loc[0, "question"])
    assert sorted(shown.choices.values()) == sorted(QUESTIONS[0].choices.values()), "options shuffled, none lost"


def test_how_training_reads_the_targets_is_part_of_the_checkpoint_fingerprint():
    from fsku_kedro.pipelines.distillation.nodes import _training_data_key

    frame = pd.DataFrame([{**_target_row(QUESTIONS[0], [0.4, 0.3, 0.2, 0.1]), "answer": 2}])
    keys = {_training_data_key("choice_target", DistillationSettings(choice_targets=change), None, frame)
            for change in ({}, {"temperature": 0.5}, {"orders": 2}, {"label_weight": 0.5})}
    assert len(keys) == 4, "a different reading of the same targets is another run"
    scored_otherwise = DistillationSettings(choice_targets={"backend": {"backend": "vllm", "batch_size": 2}})
    assert _training_data_key("choice_target", scored_otherwise, None, frame) \
        == _training_data_key("choice_target", DistillationSettings(), None, frame), "the teacher's scoring engine: same run"
