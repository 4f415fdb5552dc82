"""Validation of a student after a round: the FSKU metric on held-out questions and the
token-level agreement with the teacher on held-out teacher responses."""

from __future__ import annotations

import logging
from string import Template
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fsku_kedro.answering.choice_scoring import score_choices
from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer
from fsku_kedro.distillation.losses import token_log_probs
from fsku_kedro.distillation.trainer import final_hidden_states, shared_vocabulary
from fsku_kedro.evaluation.fsku_score import DescriptiveItem, descriptive_scores, fsku_score
from fsku_kedro.generation.backends import GenerationParams, make_backend
from fsku_kedro.knowledge.embedding import Embedder
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
    batch_size: int = 4,
    max_length: int = 1024,
    chunk_size: int = 128,
) -> dict[str, float]:
    """Mean per-token KL(teacher || student) and the student's NLL over the teacher's responses
    (the ``chosen`` side of ``pairs``), averaged over response tokens."""
    vocab = shared_vocabulary(
        teacher.tokenizer,
        student.tokenizer,
        teacher.model.get_output_embeddings().weight.shape[0],
        student.model.get_output_embeddings().weight.shape[0],
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


def fsku_validation(
    student: ModelBundle,
    questions: list[CompetitionQuestion],
    labels: dict[str, LabelledAnswer],
    templates: dict[str, str],
    embedder: Embedder,
    parameters: dict[str, Any],
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The FSKU score of ``student`` on labelled questions, without retrieval (closed book):
    choice scoring for multiple choice, greedy generation for descriptive questions."""
    mc = [q for q in questions if q.question_type == "multiple_choice"]
    desc = [q for q in questions if q.question_type == "descriptive"]

    def chat(question: CompetitionQuestion, template: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": Template(templates[template]).substitute(question=question.Question)}]

    rows: list[dict[str, Any]] = []
    choices = score_choices(
        student,
        [chat(q, "answer_multiple_choice") for q in mc],
        [len(q.choices or {}) for q in mc],
        batch_size=parameters.get("batch_size", 8),
    )
    correct = []
    for question, choice in zip(mc, choices):
        expected = labels[question.ID].answer.strip()
        correct.append(str(choice.number) == expected)
        rows.append({"ID": question.ID, "answer": str(choice.number), "expected": expected,
                     "correct": correct[-1], "confidence": choice.confidence})
    answers: list[str] = []
    if desc:
        backend = make_backend(student, parameters.get("generation", {}), show_progress=False)
        params = GenerationParams.from_parameters(parameters.get("generation", {}))
        answers = [c.text for c in backend.generate([chat(q, "answer_descriptive") for q in desc], params)]
    items = [DescriptiveItem(a, labels[q.ID].answer, labels[q.ID].keywords) for q, a in zip(desc, answers)]
    cosine, recall = descriptive_scores(embedder, items) if items else (np.zeros(0), np.zeros(0))
    for question, item, cos, rec in zip(desc, items, cosine, recall):
        rows.append({"ID": question.ID, "answer": item.answer, "expected": item.reference,
                     "cosine_similarity": float(cos), "keyword_recall": float(rec)})
    return fsku_score(correct, cosine, recall), rows
