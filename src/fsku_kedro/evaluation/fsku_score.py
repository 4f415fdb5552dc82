"""The FSKU competition score.

score = 0.5 × multiple-choice accuracy + 0.5 × descriptive score, where each descriptive answer
scores 0.6 × cosine similarity to the reference (sentence embeddings) + 0.4 × keyword recall.
When a set has only one kind of question, the score is that kind's score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fsku_kedro.knowledge.embedding import Embedder

MC_WEIGHT, COSINE_WEIGHT, KEYWORD_WEIGHT = 0.5, 0.6, 0.4


def keyword_found(text: str, keyword: str) -> bool:
    """FSKU-benchmark's own keyword rule on lower-cased text: the keyword is a substring, or it has
    several space-separated words and each of them is a substring ("자본금 차등화" is found in
    "자본금을 차등화"; "업무연속성" is not found in "업무 연속성")."""
    words = keyword.split()
    return keyword in text or (len(words) > 1 and all(word in text for word in words))


def keyword_recall(answer: str, keywords: list[str]) -> float:
    """Share of ``keywords`` found in ``answer`` by ``keyword_found``, case ignored; 1.0 without keywords."""
    wanted = [k.strip().lower() for k in keywords if k.strip()]
    if not wanted:
        return 1.0
    text = answer.lower()
    return sum(keyword_found(text, k) for k in wanted) / len(wanted)


def cosine_similarities(embedder: Embedder, answers: list[str], references: list[str]) -> np.ndarray:
    """Cosine similarity of each answer to its reference (embeddings are L2-normalised); 0 for an empty answer."""
    if not answers:
        return np.zeros(0, dtype=np.float32)
    a, r = embedder.encode(answers, "query"), embedder.encode(references, "query")  # a symmetric comparison
    sims = (a * r).sum(axis=1)
    return np.where([bool(x.strip()) for x in answers], sims, 0.0)


@dataclass
class DescriptiveItem:
    answer: str
    reference: str
    keywords: list[str]


def descriptive_scores(embedder: Embedder, items: list[DescriptiveItem]) -> tuple[np.ndarray, np.ndarray]:
    """Per-item (cosine similarity, keyword recall)."""
    cos = cosine_similarities(embedder, [i.answer for i in items], [i.reference for i in items])
    recall = np.array([keyword_recall(i.answer, i.keywords) for i in items], dtype=np.float32)
    return cos, recall


def fsku_score(mc_correct: list[bool], cosine: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The competition score and its parts from per-item results."""
    parts: dict[str, float] = {"mc_questions": float(len(mc_correct)), "descriptive_questions": float(len(cosine))}
    if len(mc_correct):
        parts["mc_accuracy"] = float(np.mean(mc_correct))
    if len(cosine):
        parts["cosine_similarity"] = float(np.mean(cosine))
        parts["keyword_recall"] = float(np.mean(recall))
        parts["descriptive_score"] = COSINE_WEIGHT * parts["cosine_similarity"] + KEYWORD_WEIGHT * parts["keyword_recall"]
    if "mc_accuracy" in parts and "descriptive_score" in parts:
        parts["fsku_score"] = MC_WEIGHT * parts["mc_accuracy"] + (1 - MC_WEIGHT) * parts["descriptive_score"]
    else:
        parts["fsku_score"] = parts.get("mc_accuracy", parts.get("descriptive_score", 0.0))
    return parts
