"""Real TRL training steps on tiny models: every method, resume, head-size and tokenizer checks."""

import copy

import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import TrainerCallback

from fsku_kedro.distillation.config import DistillationConfig
from fsku_kedro.distillation.merging import extract_adapter
from fsku_kedro.distillation.trainer import DistillationTrainer, TokenizerMismatchError
from fsku_kedro.distillation.training import build_trainer, train_round
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.distillation import BASELINES, LOSS_TYPES, DistillationSettings
from tests.distillation.conftest import pair_rows, training_parameters

pytestmark = pytest.mark.slow


class StopAfterSteps(TrainerCallback):
    """Stops training after ``steps`` optimizer steps (after their checkpoint is written): a kill."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.steps:
            control.should_training_stop = True


def _losses(history):
    return [record["loss"] for record in history if "loss" in record]


@pytest.mark.parametrize("method", LOSS_TYPES + BASELINES)  # choice_target: test_choice_targets.py
def test_every_method_lowers_its_loss_on_a_fixed_batch(method, teacher, student, fixed_pairs, tmp_path):
    _, history = train_round(method, student, teacher, fixed_pairs, training_parameters(), tmp_path)
    losses = _losses(history)
    assert len(losses) == 3
    assert losses[-1] < losses[0], losses


def test_seqkd_runs_the_student_on_the_chosen_rows_only_with_the_same_loss(teacher, student, fixed_pairs, tmp_path):
    from fsku_kedro.distillation.losses import reference_distillation_loss

    trainer = build_trainer("seqkd", student, teacher, fixed_pairs, training_parameters(), tmp_path)
    batch = {k: v for k, v in next(iter(trainer.get_train_dataloader())).items() if torch.is_tensor(v)}
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    distillm = training_parameters().distillm
    expected = reference_distillation_loss(logits[:, :-1], None, batch["input_ids"][:, 1:],
                                           batch["completion_mask"][:, 1:].bool(), loss_type="seqkd",
                                           alpha_teacher=distillm.alpha_teacher, alpha_student=distillm.alpha_student,
                                           beta=distillm.beta, jsd_lambda=distillm.jsd_lambda)
    rows = []
    hook = trainer.model.get_input_embeddings().register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    hook.remove()
    assert rows == [batch["input_ids"].shape[0] // 2], "the rejected half is not run"
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-4)


def test_distillm_v2_logs_the_terms_of_its_loss(teacher, student, fixed_pairs, tmp_path):
    params = training_parameters(
        distillm={"adaptive_alpha": True, "alpha_anchor_steps": 1, "beta_start": 0.0, "beta_warmup_steps": 2},
        gradient_checkpointing=True,
    )
    _, history = train_round("distillm_v2", student, teacher, fixed_pairs, params, tmp_path)
    steps = [r for r in history if "loss" in r]
    for key in ("kl/chosen", "kl/rejected", "logps/chosen", "logps/rejected", "teacher_logps/chosen",
                "alpha/chosen", "alpha/rejected", "beta"):
        assert key in steps[0], key
    assert [r["beta"] for r in steps] == pytest.approx([0.0, 0.5, 1.0]), "gradual beta over the steps"
    assert steps[0]["alpha/chosen"] == pytest.approx(0.1), "base alpha while anchoring"
    assert steps[-1]["alpha/chosen"] <= 0.1


def test_killed_training_resumes_from_its_checkpoint(teacher, student, fixed_pairs, tmp_path):
    params = training_parameters(max_steps=4, save_steps=1)
    pairs = DatasetDict({"train": Dataset.from_list(pair_rows(6))})
    whole, _ = train_round("distillm_v2", ModelBundle(copy.deepcopy(student.model), student.tokenizer, "s"),
                           teacher, pairs, params, tmp_path / "whole")
    # "Kill" after two steps: their checkpoints are on disk, the rest never ran.
    train_round("distillm_v2", ModelBundle(copy.deepcopy(student.model), student.tokenizer, "s"), teacher, pairs,
                params, tmp_path / "killed", extra_callbacks=[StopAfterSteps(2)])
    assert sorted(p.name for p in (tmp_path / "killed").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    resumed, history = train_round("distillm_v2", ModelBundle(copy.deepcopy(student.model), student.tokenizer, "s"),
                                   teacher, pairs, params, tmp_path / "killed")
    assert [r["step"] for r in history if "loss" in r] == [1, 2, 3, 4], "the history keeps the steps before the kill"
    expected, got = extract_adapter(whole).weights, extract_adapter(resumed).weights
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-5)


def test_teacher_head_with_padding_rows_is_sliced_to_the_tokenizer(teacher, student, fixed_pairs, tmp_path):
    vocab = len(student.tokenizer)
    teacher.model.resize_token_embeddings(vocab + 13)
    assert teacher.model.get_output_embeddings().weight.shape[0] == vocab + 13
    trainer = build_trainer("distillm_v2", student, teacher, fixed_pairs, training_parameters(max_steps=2), tmp_path)
    assert trainer.vocab_size == vocab
    trainer.train()
    losses = _losses(trainer.state.log_history)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


def test_different_tokenizers_and_a_missing_teacher_are_refused(teacher, student, fixed_pairs, tmp_path):
    other = copy.deepcopy(teacher.tokenizer)
    other.add_tokens(["<전자금융>"])
    with pytest.raises(TokenizerMismatchError, match="tokenizers differ"):
        build_trainer("kd", student, ModelBundle(teacher.model, other, "t"), fixed_pairs, training_parameters(),
                      tmp_path)
    args = DistillationConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="needs the teacher as ref_model"):
        DistillationTrainer(model=student.model, ref_model=None, args=args, train_dataset=fixed_pairs["train"],
                            processing_class=student.tokenizer)
    with pytest.raises(ValueError, match="is not one of"):
        DistillationConfig(output_dir=str(tmp_path), distillation_loss="dpo", use_cpu=True)
    with pytest.raises(ValueError, match="loss"):
        DistillationSettings(loss="simpo")


def test_teacher_agreement_is_zero_against_itself_and_matches_a_direct_nll(teacher, student, fixed_pairs):
    from fsku_kedro.distillation.validation import teacher_agreement, tokenise_response

    itself = teacher_agreement(teacher, teacher, fixed_pairs["train"], batch_size=4, max_length=1024, chunk_size=128)
    assert itself["token_kl"] == pytest.approx(0.0, abs=1e-6)
    measured = teacher_agreement(student, teacher, fixed_pairs["train"], batch_size=1, max_length=1024, chunk_size=3)
    assert measured["token_kl"] > 0
    nll, tokens = 0.0, 0
    for row in fixed_pairs["train"]:
        ids, start = tokenise_response(student.tokenizer, row["prompt"], row["chosen"], 1024)
        with torch.no_grad():
            logp = torch.log_softmax(student.model(torch.tensor([ids])).logits[0, :-1], -1)
        targets = torch.tensor(ids[1:])
        picked = logp[torch.arange(len(targets)), targets][start - 1:]
        nll, tokens = nll - float(picked.sum()), tokens + len(picked)
    assert measured["response_tokens"] == tokens
    assert measured["teacher_response_nll"] == pytest.approx(nll / tokens, rel=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_qlora_is_refused_on_cpu_before_any_work(teacher, student, fixed_pairs, tmp_path):
    parameters = training_parameters().model_copy(update={"qlora": True})
    with pytest.raises(RuntimeError, match="qlora needs a CUDA GPU"):
        build_trainer("distillm_v2", student, teacher, fixed_pairs, parameters, tmp_path)
    assert not any(tmp_path.iterdir())
