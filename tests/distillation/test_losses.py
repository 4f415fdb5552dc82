"""The chunked distillation loss against the full-vocabulary specification, and its properties."""

import pytest
import torch

from fsku_kedro.distillation.losses import (
    distillation_loss,
    reference_distillation_loss,
    token_divergence,
)
from fsku_kedro.parameters.distillation import LOSS_TYPES, DistillMSettings

PAIRS, STEPS, HS, HT, VOCAB = 3, 9, 16, 24, 70


def _settings(**changes) -> dict:
    """The loss's keyword arguments at the settings' defaults (DistiLLM-2), with ``changes``."""
    defaults = DistillMSettings()
    return {"loss_type": "distillm_v2", "alpha_teacher": defaults.alpha_teacher,
            "alpha_student": defaults.alpha_student, "beta": defaults.beta, "jsd_lambda": defaults.jsd_lambda,
            "chunk_size": defaults.loss_chunk_size, **changes}


def _batch(seed=0, teacher_rows=VOCAB + 11):
    g = torch.Generator().manual_seed(seed)
    student_hidden = torch.randn(2 * PAIRS, STEPS, HS, generator=g, requires_grad=True)
    student_head = (0.5 * torch.randn(VOCAB, HS, generator=g)).requires_grad_()
    teacher_hidden = torch.randn(2 * PAIRS, STEPS, HT, generator=g)
    teacher_head = 0.5 * torch.randn(teacher_rows, HT, generator=g)  # padded head, like Qwen2.5-7B's
    labels = torch.randint(0, VOCAB, (2 * PAIRS, STEPS), generator=g)
    mask = torch.rand(2 * PAIRS, STEPS, generator=g) > 0.35
    mask[:, 0] = True
    return student_hidden, student_head, teacher_hidden, teacher_head, labels, mask


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
def test_chunked_loss_equals_full_vocabulary_loss(loss_type, chunk_size):
    hs, ws, ht, wt, labels, mask = _batch()
    settings = dict(loss_type=loss_type, alpha_teacher=torch.tensor([0.1, 0.3, 0.05]), alpha_student=0.2,
                    beta=0.6, jsd_lambda=0.3, vocab_size=VOCAB)
    chunked = distillation_loss(hs, ws, ht, wt, labels, mask, chunk_size=chunk_size, **settings)
    grads = torch.autograd.grad(chunked.loss, [hs, ws])
    full = reference_distillation_loss(hs @ ws.T, ht @ wt[:VOCAB].T, labels, mask, **settings)
    full_grads = torch.autograd.grad(full, [hs, ws])
    assert chunked.loss.item() == pytest.approx(full.item(), abs=1e-5)
    for mine, expected in zip(grads, full_grads):
        torch.testing.assert_close(mine, expected, atol=1e-5, rtol=1e-5)
    assert chunked.loss.item() > 0


def test_divergences_vanish_when_student_equals_teacher():
    log_p = torch.log_softmax(torch.randn(4, 30), -1)
    labels = torch.zeros(4, dtype=torch.long)
    alpha = torch.full((4, 1), 0.1)
    for divergence in ("skl", "srkl", "fkl", "rkl", "jsd"):
        value = token_divergence(divergence, log_p, log_p.clone(), labels, alpha, 0.5)
        torch.testing.assert_close(value, torch.zeros(4), atol=1e-6, rtol=0)


def test_skew_kl_interpolates_between_zero_and_forward_kl():
    log_p = torch.log_softmax(torch.randn(3, 40), -1)
    log_q = torch.log_softmax(torch.randn(3, 40), -1)
    labels = torch.zeros(3, dtype=torch.long)
    forward = token_divergence("fkl", log_p, log_q, labels, torch.full((3, 1), 0.5), 0.5)
    small = token_divergence("skl", log_p, log_q, labels, torch.full((3, 1), 1e-6), 0.5)
    large = token_divergence("skl", log_p, log_q, labels, torch.full((3, 1), 1 - 1e-6), 0.5)
    torch.testing.assert_close(small, forward, atol=1e-4, rtol=1e-4)
    assert (large.abs() < 1e-4).all()
    middle = token_divergence("skl", log_p, log_q, labels, torch.full((3, 1), 0.1), 0.5)
    assert ((middle > 0) & (middle < forward)).all()


def test_beta_weights_the_two_sides_of_distillm_v2():
    hs, ws, ht, wt, labels, mask = _batch(seed=3)
    only_chosen = distillation_loss(hs, ws, ht, wt, labels, mask, **_settings(beta=0.0, vocab_size=VOCAB))
    only_rejected = distillation_loss(hs, ws, ht, wt, labels, mask, **_settings(beta=2.0, vocab_size=VOCAB))
    assert only_chosen.loss.item() == pytest.approx(2 * only_chosen.chosen_divergence.mean().item(), rel=1e-5)
    assert only_rejected.loss.item() == pytest.approx(2 * only_rejected.rejected_divergence.mean().item(), rel=1e-5)


def test_student_reverse_kl_stops_the_gradient_through_its_mixture():
    # d/dq of KL(q || (1-a)p + a·sg(q)) must differ from the version that differentiates the mixture.
    log_p = torch.log_softmax(torch.randn(2, 12), -1)
    logits = torch.randn(2, 12, requires_grad=True)
    alpha = torch.full((2, 1), 0.3)
    labels = torch.zeros(2, dtype=torch.long)
    stopped = torch.autograd.grad(
        token_divergence("srkl", log_p, torch.log_softmax(logits, -1), labels, alpha, 0.5).sum(), logits
    )[0]
    log_q = torch.log_softmax(logits, -1)
    mixture = torch.logaddexp(log_q + torch.log(alpha), log_p + torch.log1p(-alpha))
    through = torch.autograd.grad((log_q.exp() * (log_q - mixture)).sum(), logits)[0]
    assert not torch.allclose(stopped, through, atol=1e-4)


def test_bad_arguments_are_named():
    hs, ws, ht, wt, labels, mask = _batch()
    with pytest.raises(ValueError, match="unknown distillation loss type 'mse'"):
        distillation_loss(hs, ws, ht, wt, labels, mask, **_settings(loss_type="mse"))
    with pytest.raises(ValueError, match="needs the teacher"):
        distillation_loss(hs, ws, None, None, labels, mask, **_settings(loss_type="kd"))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        distillation_loss(hs, ws, ht, wt, labels, mask, **_settings(alpha_teacher=1.0, vocab_size=VOCAB))
    seqkd = distillation_loss(hs, ws, None, None, labels, mask, **_settings(loss_type="seqkd"))
    assert seqkd.teacher_logps is None and seqkd.loss.item() > 0
