"""Token-level distillation divergences, computed in chunks of tokens.

Notation: ``p`` is the teacher's next-token distribution, ``q`` the student's, both over the
shared vocabulary. A batch holds ``B`` pairs as ``2B`` rows: rows ``0..B-1`` are the chosen
(teacher-written) responses, rows ``B..2B-1`` the rejected (student-written) ones, in the order
of TRL's ``DataCollatorForPreference``.

Divergences per token position::

    skl   KL(p || a·p + (1-a)·q)                 skew KL, a = alpha_teacher
    srkl  KL(q || (1-a)·p + a·sg(q))             skew reverse KL, a = alpha_student, sg = no gradient
    fkl   KL(p || q)                             forward KL
    rkl   KL(q || p)                             reverse KL
    jsd   l·KL(p || m) + (1-l)·KL(q || m)        generalised JSD, m = l·p + (1-l)·q, l = jsd_lambda
    nll   -log q(y)                              next-token NLL of the response (sequence-level KD)

Each loss type applies one divergence to chosen tokens and one to rejected tokens, averages it
over each sequence's response tokens, weights the two sides and averages over pairs:

    distillm_v2  (2 - beta)·skl(chosen) + beta·srkl(rejected)      (DistiLLM-2)
    distillm_v1  srkl(chosen) + srkl(rejected)                      (DistiLLM, skew reverse KL)
    kd           fkl(chosen) + fkl(rejected)
    rkl          rkl(chosen) + rkl(rejected)
    gkd          jsd(chosen) + jsd(rejected)
    seqkd        nll(chosen)

``distillation_loss`` projects hidden states through the LM heads one chunk of response tokens
at a time, so at most a few ``chunk_size × V`` tensors exist at once. Like activation
checkpointing it keeps no logits for the backward pass; instead of recomputing them there, it
forms each chunk's closed-form gradient in the forward pass (``divergence_gradient``) and keeps
only the ``[N, H]`` and ``[V, H]`` gradients. ``reference_distillation_loss`` is the same
mathematics with autograd on full ``[2B, T, V]`` logits: the specification the chunked version
is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fsku_kedro.names import LOSS_DIVERGENCES


@dataclass
class DistillationLoss:
    """The scalar loss and detached per-sequence diagnostics (means over response tokens)."""

    loss: torch.Tensor
    chosen_divergence: torch.Tensor  # [B]
    rejected_divergence: torch.Tensor | None  # [B], None for seqkd
    student_logps: torch.Tensor  # [2B] mean log q(y) per token (NaN on rejected rows for seqkd)
    teacher_logps: torch.Tensor | None  # [2B] mean log p(y) per token, None without a teacher


def needs_teacher(loss_type: str) -> bool:
    return _divergences(loss_type)[0] != "nll"


def scores_rejected(loss_type: str) -> bool:
    """Whether the loss reads the rejected (student-response) rows at all (seqkd does not)."""
    return _divergences(loss_type)[1] is not None


def _divergences(loss_type: str) -> tuple[str, str | None]:
    if loss_type not in LOSS_DIVERGENCES:
        raise ValueError(f"unknown distillation loss type {loss_type!r}; expected one of {', '.join(LOSS_DIVERGENCES)}")
    return LOSS_DIVERGENCES[loss_type]


def side_weights(loss_type: str, beta: float) -> tuple[float, float]:
    """Weights of the chosen and rejected terms."""
    chosen, rejected = _divergences(loss_type)
    if rejected is None:
        return 1.0, 0.0
    if loss_type == "distillm_v2":
        return 2.0 - beta, beta
    return 1.0, 1.0


def _log_mix(log_a: torch.Tensor, log_b: torch.Tensor, weight_a: torch.Tensor) -> torch.Tensor:
    """log(w·a + (1-w)·b) from log a and log b; ``weight_a`` broadcasts over the vocabulary."""
    return torch.logaddexp(log_a + torch.log(weight_a), log_b + torch.log1p(-weight_a))


def token_divergence(
    divergence: str,
    log_p: torch.Tensor | None,
    log_q: torch.Tensor,
    labels: torch.Tensor,
    alpha: torch.Tensor,
    jsd_lambda: float,
) -> torch.Tensor:
    """One divergence per row of ``[N, V]`` log-probabilities; ``alpha`` is ``[N, 1]``."""
    if divergence == "nll":
        return -log_q.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if divergence == "fkl":
        return (log_p.exp() * (log_p - log_q)).sum(-1)
    if divergence == "rkl":
        return (log_q.exp() * (log_q - log_p)).sum(-1)
    if divergence == "skl":
        return (log_p.exp() * (log_p - _log_mix(log_p, log_q, alpha))).sum(-1)
    if divergence == "srkl":
        mixture = _log_mix(log_q.detach(), log_p, alpha)  # a·sg(q) + (1-a)·p
        return (log_q.exp() * (log_q - mixture)).sum(-1)
    if divergence == "jsd":
        lam = torch.full_like(alpha, jsd_lambda)
        mixture = _log_mix(log_p, log_q, lam)
        return jsd_lambda * (log_p.exp() * (log_p - mixture)).sum(-1) + (1 - jsd_lambda) * (
            log_q.exp() * (log_q - mixture)
        ).sum(-1)
    raise ValueError(f"unknown divergence {divergence!r}")


def divergence_gradient(
    divergence: str,
    log_p: torch.Tensor | None,
    log_q: torch.Tensor,
    labels: torch.Tensor,
    alpha: torch.Tensor,
    jsd_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row divergence and its gradient with respect to the student's logits ``z``.

    With ``q = softmax(z)``, every divergence here has ``d/dz = q ⊙ (c - E_q[c])`` for a
    per-token vector ``c``:

        fkl   c = -p / q               (so d/dz = q - p)
        rkl   c = log q - log p
        srkl  c = log q - log m'       m' = (1-a)·p + a·sg(q) carries no gradient
        skl   c = -(1 - a) · p / m     m = a·p + (1-a)·q
        jsd   c = (1 - l) · (log q - log m)
        nll   d/dz = q - onehot(y)

    Works in place on its own temporaries to keep the number of ``[N, V]`` tensors small;
    ``log_p`` and ``log_q`` are left unchanged.
    """
    q = log_q.exp()
    if divergence == "nll":
        q.scatter_add_(-1, labels.unsqueeze(-1), torch.full_like(labels, -1, dtype=q.dtype).unsqueeze(-1))
        return -log_q.gather(-1, labels.unsqueeze(-1)).squeeze(-1), q
    if divergence == "fkl":
        p = log_p.exp()
        value = (p * (log_p - log_q)).sum(-1)
        return value, q.sub_(p)
    if divergence in ("rkl", "srkl"):
        c = log_q - (log_p if divergence == "rkl" else _log_mix(log_q, log_p, alpha))
        value = (q * c).sum(-1)
        return value, c.sub_(value.unsqueeze(-1)).mul_(q)
    if divergence == "skl":
        log_ratio = _log_mix(log_p, log_q, alpha).neg_().add_(log_p)  # log p - log m
        value = (log_p.exp() * log_ratio).sum(-1)
        c = log_ratio.exp_().mul_(-(1 - alpha))
    elif divergence == "jsd":
        log_m = _log_mix(log_p, log_q, torch.full_like(alpha, jsd_lambda))
        value = jsd_lambda * (log_p.exp() * (log_p - log_m)).sum(-1)
        c = log_m.neg_().add_(log_q)  # log q - log m
        value += (1 - jsd_lambda) * (q * c).sum(-1)
        c.mul_(1 - jsd_lambda)
    else:
        raise ValueError(f"unknown divergence {divergence!r}")
    mean = (q * c).sum(-1, keepdim=True)
    return value, c.sub_(mean).mul_(q)


def _log_probs(hidden: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return F.log_softmax((hidden @ head.T).float(), dim=-1)


class _ChunkedDivergence(torch.autograd.Function):
    """Sum over tokens of ``weight · divergence``, one chunk of tokens through the heads at a time.

    The gradients for the student's hidden states and head are formed chunk by chunk in the
    forward pass (``divergence_gradient``), so no chunk's logits are kept for the backward pass
    and the head's gradient is accumulated into one buffer.
    """

    @staticmethod
    def forward(ctx, s_hidden, s_head, t_hidden, t_head, labels, alpha, weight, divergences, segments,
                jsd_lambda, vocab, chunk_size):
        want_hidden, want_head = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n = labels.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=s_hidden.device)
        values = torch.zeros(n, dtype=torch.float32, device=s_hidden.device)
        s_logps, t_logps = torch.zeros_like(values), torch.zeros_like(values)
        grad_hidden = torch.zeros(s_hidden.shape, dtype=torch.float32, device=s_hidden.device) if want_hidden else None
        grad_head = torch.zeros(s_head.shape, dtype=torch.float32, device=s_head.device) if want_head else None
        s_weight = s_head[:vocab]
        t_weight = t_head[:vocab] if t_head is not None else None
        for divergence, (first, last) in zip(divergences, segments):
            for start in range(first, last, chunk_size):
                part = slice(start, min(start + chunk_size, last))
                y = labels[part]
                log_q = _log_probs(s_hidden[part], s_weight)
                s_logps[part] = log_q.gather(-1, y.unsqueeze(-1)).squeeze(-1)
                log_p = None
                if t_weight is not None:
                    log_p = _log_probs(t_hidden[part], t_weight)
                    t_logps[part] = log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
                value, grad_logits = divergence_gradient(divergence, log_p, log_q, y, alpha[part], jsd_lambda)
                del log_p, log_q
                values[part] = value
                total += (value * weight[part]).sum()
                if want_hidden or want_head:
                    grad_logits.mul_(weight[part].unsqueeze(-1))
                    if want_hidden:
                        grad_hidden[part] = grad_logits @ s_weight.float()
                    if want_head:
                        grad_head[:vocab].addmm_(grad_logits.T, s_hidden[part].float())
        ctx.save_for_backward(grad_hidden, grad_head)
        ctx.dtypes = (s_hidden.dtype, s_head.dtype)
        ctx.mark_non_differentiable(values, s_logps, t_logps)
        return total, values, s_logps, t_logps

    @staticmethod
    def backward(ctx, grad_total, *unused):
        grad_hidden, grad_head = ctx.saved_tensors
        # A unit upstream gradient (the loss itself) returns the buffers as they are: no [V, H] copy.
        unit = bool(grad_total == 1)

        def scaled(buffer, dtype):
            return (buffer if unit else buffer * grad_total).to(dtype)

        hidden = scaled(grad_hidden, ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        head = scaled(grad_head, ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        return hidden, head, *([None] * 10)


def token_log_probs(
    student_hidden: torch.Tensor,
    student_head: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_head: torch.Tensor,
    labels: torch.Tensor,
    vocab_size: int | None,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Without gradients, for ``[N, H]`` response positions: per-token KL(p || q), log q(y), log p(y)."""
    vocab = vocab_size or student_head.shape[0]
    with torch.no_grad():
        n = labels.shape[0]
        return _ChunkedDivergence.apply(
            student_hidden, student_head, teacher_hidden, teacher_head, labels,
            torch.full((n, 1), 0.5, device=labels.device), torch.zeros(n, device=labels.device),
            ("fkl",), ((0, n),), 0.5, vocab, chunk_size,
        )[1:]


def _per_sequence(alpha: float | torch.Tensor, rows: int, device: torch.device) -> torch.Tensor:
    values = torch.as_tensor(alpha, dtype=torch.float32, device=device)
    values = values.expand(rows) if values.dim() == 0 else values
    if values.shape != (rows,):
        raise ValueError(f"alpha must be a float or one value per sequence ({rows}), got shape {tuple(values.shape)}")
    if not bool(((values > 0) & (values < 1)).all()):
        raise ValueError("alpha must lie strictly between 0 and 1")
    return values


def distillation_loss(
    student_hidden: torch.Tensor,
    student_head: torch.Tensor,
    teacher_hidden: torch.Tensor | None,
    teacher_head: torch.Tensor | None,
    labels: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    loss_type: str,
    alpha_teacher: float | torch.Tensor,
    alpha_student: float | torch.Tensor,
    beta: float,
    jsd_lambda: float,
    chunk_size: int,
    vocab_size: int | None = None,
) -> DistillationLoss:
    """The loss of ``loss_type`` for ``B`` pairs, one chunk of response tokens at a time.

    Args:
        student_hidden: ``[2B, T, Hs]`` final hidden states of the student (chosen rows first);
            position ``t`` predicts ``labels[:, t]``.
        student_head: ``[Vs, Hs]`` student LM-head weight.
        teacher_hidden / teacher_head: the teacher's, ``[2B, T, Ht]`` and ``[Vt, Ht]``; may be
            ``None`` for ``seqkd``. No gradient flows into them.
        labels: ``[2B, T]`` next-token ids; response_mask: ``[2B, T]``, true on response tokens.
        alpha_teacher / alpha_student: skew of the chosen (``skl``) and rejected (``srkl``) terms,
            a float or one value per pair ``[B]`` (adaptive alpha).
        beta: weight of the rejected term of ``distillm_v2`` (the chosen term gets ``2 - beta``).
        jsd_lambda: the teacher's weight in the mixture of ``gkd``.
        chunk_size: response tokens projected through the heads at once.
        vocab_size: score only the first ``vocab_size`` rows of both heads (the shared
            tokenizer's vocabulary) when the heads differ in size; None: the student head's rows.

    The loss settings have no defaults here: ``DistillMSettings`` holds them (``chunk_size`` is its
    ``loss_chunk_size``).
    """
    chosen_div, rejected_div = _divergences(loss_type)
    if chosen_div != "nll" and (teacher_hidden is None or teacher_head is None):
        raise ValueError(f"loss type {loss_type!r} needs the teacher's hidden states and head")
    rows = student_hidden.shape[0]
    if rows % 2:
        raise ValueError(f"expected chosen and rejected rows (an even count), got {rows}")
    pairs = rows // 2
    device = student_hidden.device
    vocab = vocab_size or student_head.shape[0]
    use_teacher = teacher_head is not None and chosen_div != "nll"
    mask = response_mask.bool()
    lengths = mask.sum(-1).clamp(min=1).float()
    w_chosen, w_rejected = side_weights(loss_type, beta)
    alphas = {
        "chosen": _per_sequence(alpha_teacher, pairs, device),
        "rejected": _per_sequence(alpha_student, pairs, device),
    }

    # The chosen side's tokens, then the rejected side's: one segment (one divergence) each.
    hidden_parts, teacher_parts, label_parts, alpha_parts, weight_parts, rows_of = [], [], [], [], [], []
    divergences, segments, count = [], [], 0
    sides = [("chosen", slice(0, pairs), chosen_div, w_chosen)]
    if rejected_div is not None:
        sides.append(("rejected", slice(pairs, rows), rejected_div, w_rejected))
    for side, rows_slice, divergence, side_weight in sides:
        side_mask = torch.zeros_like(mask)
        side_mask[rows_slice] = mask[rows_slice]
        row_of_token = side_mask.nonzero(as_tuple=True)[0]
        hidden_parts.append(student_hidden[side_mask])
        if use_teacher:
            teacher_parts.append(teacher_hidden[side_mask])
        label_parts.append(labels[side_mask])
        alpha_parts.append(alphas[side][row_of_token % pairs].unsqueeze(-1))
        weight_parts.append(side_weight / lengths[row_of_token] / pairs)
        rows_of.append(row_of_token)
        divergences.append(divergence)
        segments.append((count, count + row_of_token.shape[0]))
        count += row_of_token.shape[0]
    loss, values, s_logps, t_logps = _ChunkedDivergence.apply(
        torch.cat(hidden_parts),
        student_head,
        torch.cat(teacher_parts) if use_teacher else None,
        teacher_head if use_teacher else None,
        torch.cat(label_parts),
        torch.cat(alpha_parts),
        torch.cat(weight_parts),
        tuple(divergences),
        tuple(segments),
        jsd_lambda,
        vocab,
        chunk_size,
    )
    token_rows = torch.cat(rows_of)
    seq_div = torch.zeros(rows, dtype=torch.float32, device=device).index_add_(0, token_rows, values)
    seq_student = torch.zeros(rows, dtype=torch.float32, device=device).index_add_(0, token_rows, s_logps)
    seq_teacher = torch.zeros(rows, dtype=torch.float32, device=device).index_add_(0, token_rows, t_logps)
    seq_div, seq_student, seq_teacher = seq_div / lengths, seq_student / lengths, seq_teacher / lengths
    if rejected_div is None:  # rejected rows were not scored
        seq_student[pairs:] = float("nan")
    return DistillationLoss(
        loss=loss,
        chosen_divergence=seq_div[:pairs],
        rejected_divergence=seq_div[pairs:] if rejected_div else None,
        student_logps=seq_student,
        teacher_logps=seq_teacher if use_teacher else None,
    )


def reference_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    loss_type: str,
    alpha_teacher: float | torch.Tensor,
    alpha_student: float | torch.Tensor,
    beta: float,
    jsd_lambda: float,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """The same loss on full ``[2B, T, V]`` logits: simple, memory-hungry, the test oracle."""
    chosen_div, rejected_div = _divergences(loss_type)
    rows, steps, _ = student_logits.shape
    pairs = rows // 2
    vocab = vocab_size or student_logits.shape[-1]
    log_q = F.log_softmax(student_logits[..., :vocab].float(), dim=-1)
    log_p = F.log_softmax(teacher_logits[..., :vocab].float(), dim=-1) if chosen_div != "nll" else None
    mask = response_mask.float()
    w_chosen, w_rejected = side_weights(loss_type, beta)
    total = student_logits.new_zeros((), dtype=torch.float32)
    for rows_slice, divergence, weight, alpha in (
        (slice(0, pairs), chosen_div, w_chosen, alpha_teacher),
        (slice(pairs, rows), rejected_div, w_rejected, alpha_student),
    ):
        if divergence is None or not weight:
            continue
        a = torch.as_tensor(alpha, dtype=torch.float32, device=student_logits.device)
        a = (a.expand(pairs) if a.dim() == 0 else a).view(pairs, 1, 1).expand(pairs, steps, 1)
        div = token_divergence(
            divergence,
            log_p[rows_slice] if log_p is not None else None,
            log_q[rows_slice],
            labels[rows_slice],
            a,
            jsd_lambda,
        )
        per_sequence = (div * mask[rows_slice]).sum(-1) / mask[rows_slice].sum(-1).clamp(min=1)
        total = total + weight * per_sequence.mean()
    return total


def sequence_log_prob_gap(teacher_logps: torch.Tensor, student_logps: torch.Tensor) -> torch.Tensor:
    """exp(mean log p) - exp(mean log q) per sequence: how much likelier the teacher finds it."""
    return teacher_logps.exp() - student_logps.exp()
