"""Token-level agreement of a student with its teacher on held-out teacher responses (the KL that
distillation lowers); the FSKU part of a round's validation is ``evaluation.closed_book``."""

from __future__ import annotations

import logging
from typing import Any

import torch
from tqdm.auto import tqdm

from fsku_kedro.distillation.heads import final_hidden_states, head_rows
from fsku_kedro.distillation.losses import token_log_probs
from fsku_kedro.distillation.trainer import shared_vocabulary
from fsku_kedro.models.bundle import ModelBundle

logger = logging.getLogger(__name__)


def tokenise_response(tokenizer, prompt: list[dict], response: list[dict], max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt + response through the chat template, and where the response starts."""
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    full_ids = tokenizer.apply_chat_template(prompt + response, tokenize=True, return_dict=False)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the chat template renders the prompt differently with and without the response")
    return full_ids[:max_length], len(prompt_ids)


def teacher_agreement(
    student: ModelBundle,
    teacher: ModelBundle,
    pairs: Any,
    *,
    batch_size: int,
    max_length: int,
    chunk_size: int,
) -> dict[str, float]:
    """Mean per-token KL(teacher || student) and the student's NLL over the teacher's responses
    (the ``chosen`` side of ``pairs``), averaged over response tokens; ``batch_size`` rows at a time,
    each cut to ``max_length`` tokens, ``chunk_size`` response tokens through the heads at once."""
    vocab = shared_vocabulary(
        teacher.tokenizer,
        student.tokenizer,
        head_rows(teacher.model),
        head_rows(student.model),
    )
    rows = [tokenise_response(student.tokenizer, r["prompt"], r["chosen"], max_length) for r in pairs]
    pad = student.tokenizer.pad_token_id if student.tokenizer.pad_token_id is not None else 0
    kl_sum = nll_sum = 0.0
    tokens = 0
    student.model.eval()
    teacher.model.eval()
    for start in tqdm(range(0, len(rows), batch_size), desc="teacher agreement", disable=len(rows) < 64):
        batch = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        response = torch.zeros((len(batch), width), dtype=torch.bool)
        for i, (ids, prompt_length) in enumerate(batch):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
            response[i, prompt_length : len(ids)] = True
        labels, mask = input_ids[:, 1:], response[:, 1:]
        with torch.no_grad():
            hs = final_hidden_states(student.model, input_ids, attention)[:, :-1][mask]
            ht = final_hidden_states(teacher.model, input_ids, attention)[:, :-1][mask]
            kl, s_logp, _ = token_log_probs(
                hs, student.model.get_output_embeddings().weight, ht, teacher.model.get_output_embeddings().weight,
                labels[mask], vocab_size=vocab, chunk_size=chunk_size,
            )
            kl_sum += float(kl.sum())
            nll_sum += float(-s_logp.sum())
        tokens += int(mask.sum())
    tokens = max(tokens, 1)
    return {"token_kl": kl_sum / tokens, "teacher_response_nll": nll_sum / tokens, "response_tokens": float(tokens)}
