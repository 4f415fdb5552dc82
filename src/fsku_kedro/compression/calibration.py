"""Calibration text for GPTQ: what the served model reads.

Besides knowledge-base chunks and training prompts, task-like prompts: FSKU-style multiple-choice
questions made from the chunks (never from an evaluation set), put in the inference prompt templates,
closed book and with the chunk as the retrieved context, so the activations GPTQ sees are those of
answering. Prompts reach the model through its chat template, as in inference.
"""

from __future__ import annotations

import re
from string import Template
from typing import Any

import pandas as pd

from fsku_kedro.hashing import unit_hash

STEMS = (
    "다음 중 {topic}에 관한 설명으로 가장 적절한 것은?",
    "다음 중 {topic}의 내용으로 옳은 것은?",
    "{topic}에 대한 설명 중 맞는 것은?",
)
SENTENCE_END = re.compile(r"(?<=[다요음함임\.])\s+")
OPTION_CHARS = (15, 160)  # a sentence this long makes a plausible option


def _sentences(text: str) -> list[str]:
    pieces = (re.sub(r"\s+", " ", s).strip(" -*#|") for s in SENTENCE_END.split(text))
    return [s for s in pieces if OPTION_CHARS[0] <= len(s) <= OPTION_CHARS[1]]


def multiple_choice_questions(chunks: pd.DataFrame, count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` four-option questions, each about one chunk, as (the chunk's text, the question): the
    correct option is one of its sentences, the others are sentences of other documents."""
    if count == 0:
        return []
    rows = [(str(r.doc_id), str(r.title or r.doc_id), _sentences(str(r.content))) for r in chunks.itertuples()]
    rows = [row for row in rows if row[2]]
    rows.sort(key=lambda row: unit_hash(seed, "mc_prompt", row[2][0]))
    pool = [(doc, sentence) for doc, _, sentences in rows for sentence in sentences]
    if len({doc for doc, _ in pool}) < 2:
        raise ValueError("multiple-choice questions from the corpus need sentences from at least two documents")
    questions = []
    for n in range(count):
        doc, topic, sentences = rows[n % len(rows)]
        answer = sentences[n // len(rows) % len(sentences)]
        others = sorted((item for item in pool if item[0] != doc), key=lambda item: unit_hash(seed, n, item[1]))
        options = [answer] + [sentence for _, sentence in others[:3]]
        options.sort(key=lambda text: unit_hash(seed, "order", n, text))
        stem = STEMS[n % len(STEMS)].format(topic=topic)
        questions.append((" ".join(sentences),
                          "\n".join([stem] + [f"{i} {text}" for i, text in enumerate(options, start=1)])))
    return questions


def multiple_choice_prompts(chunks: pd.DataFrame, count: int, seed: int, templates: dict[str, str]) -> list[str]:
    """``count`` user prompts of ``multiple_choice_questions``: even-numbered ones closed book
    (``closed_book_multiple_choice``), odd ones with the chunk as context (``inference_multiple_choice``)."""
    prompts = []
    for n, (chunk, question) in enumerate(multiple_choice_questions(chunks, count, seed)):
        if n % 2 == 0:
            prompts.append(Template(templates["closed_book_multiple_choice"]).substitute(question=question))
        else:
            prompts.append(Template(templates["inference_multiple_choice"]).substitute(question=question,
                                                                                        context=f"[1] {chunk}"))
    return prompts


def calibration_texts(calibration_set: dict, tokenizer: Any) -> list[str]:
    """The texts a method calibrates on: the chunks as they are, the prompts as the model reads them
    (its chat template with the assistant turn opened; plain text for a model without a template)."""
    prompts = calibration_set.get("prompts", [])
    if getattr(tokenizer, "chat_template", None):
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                 add_generation_prompt=True) for p in prompts]
    return list(calibration_set["calibration"]) + list(prompts)
