"""The FSKU score of a model without retrieval (closed book), as distillation validation and the
compression report measure it after each round or quantization."""

from __future__ import annotations

from string import Template
from typing import Any

import numpy as np

from fsku_kedro.answering.choice_scoring import score_choices
from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer
from fsku_kedro.evaluation.fsku_score import DescriptiveItem, descriptive_scores, fsku_score
from fsku_kedro.generation.backends import make_backend
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.generation import GenerationSettings


def fsku_validation(
    student: ModelBundle,
    questions: list[CompetitionQuestion],
    labels: dict[str, LabelledAnswer],
    templates: dict[str, str],
    embedder: Embedder,
    batch_size: int,
    generation: GenerationSettings,
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
        [chat(q, "closed_book_multiple_choice") for q in mc],
        [len(q.choices or {}) for q in mc],
        batch_size=batch_size,
    )
    correct = []
    for question, choice in zip(mc, choices):
        expected = labels[question.ID].answer.strip()
        correct.append(str(choice.number) == expected)
        rows.append({"ID": question.ID, "answer": str(choice.number), "expected": expected,
                     "correct": correct[-1], "confidence": choice.confidence})
    answers: list[str] = []
    if desc:
        backend = make_backend(student, generation, show_progress=False)
        answers = [c.text for c in backend.generate([chat(q, "answer_descriptive") for q in desc],
                                                    generation.sampling())]
    items = [DescriptiveItem(a, labels[q.ID].answer, labels[q.ID].keywords) for q, a in zip(desc, answers)]
    cosine, recall = descriptive_scores(embedder, items) if items else (np.zeros(0), np.zeros(0))
    for question, item, cos, rec in zip(desc, items, cosine, recall):
        rows.append({"ID": question.ID, "answer": item.answer, "expected": item.reference,
                     "cosine_similarity": float(cos), "keyword_recall": float(rec)})
    return fsku_score(correct, cosine, recall), rows
