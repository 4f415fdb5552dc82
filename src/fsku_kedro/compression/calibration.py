"""Calibration text for GPTQ: what the served model reads.

Besides knowledge-base chunks and training prompts, task-like prompts: FSKU-style multiple-choice
questions made from the chunks (never from an evaluation set), put in the inference prompt templates,
closed book and with the chunk as the retrieved context, so the activations GPTQ sees are those of
answering. Prompts reach the model through its chat template, as in inference.
"""

from __future__ import annotations

from string import Template
from typing import Any

import pandas as pd

from fsku_kedro.knowledge.corpus_questions import multiple_choice_questions


def multiple_choice_prompts(chunks: pd.DataFrame, count: int, seed: int, templates: dict[str, str]) -> list[str]:
    """``count`` user prompts of ``multiple_choice_questions``: even-numbered ones closed book
    (``closed_book_multiple_choice``), odd ones with the chunk as context (``inference_multiple_choice``)."""
    prompts = []
    # Positive questions with off-topic options: the calibration text needs no harder kind.
    questions = multiple_choice_questions(chunks, count, seed, negative_share=0.0, distractors="other_documents")
    for n, (chunk, question, *_) in enumerate(questions):
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
