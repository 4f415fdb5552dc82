"""Answers that need no model: what a question gets when the model is too slow or fails.

Multiple choice: the option sharing the most character bigrams with the retrieved text (ties go
to the lower number). Descriptive: the sentences of the top retrieved chunk that share the most
bigrams with the question, in their original order, cut to a few sentences.
"""

from __future__ import annotations

import re
from collections import Counter

# Sentence ends: punctuation (not a heading's number, "3. 암호키 관리") or a line break; not every
# 다/요, as "2년마다" and "다음" end no sentence.
SENTENCE_END = re.compile(r"(?<=[.?!])(?<!\d\.)\s+|\n+")


def bigrams(text: str) -> Counter:
    squashed = re.sub(r"\s+", "", text)
    return Counter(squashed[i : i + 2] for i in range(len(squashed) - 1))


def overlap(a: Counter, b: Counter) -> int:
    return sum((a & b).values())


def overlap_choice(options: dict[str, str], context: str) -> tuple[int, float | None]:
    """(option number, its share of all options' overlap) by bigram overlap with ``context``; no
    share (None) when no option overlaps it, as nothing was measured."""
    context_grams = bigrams(context)
    scores = [(overlap(bigrams(text), context_grams) / max(len(text), 1), int(number)) for number, text in options.items()]
    best_score, best_number = max(scores, key=lambda item: (item[0], -item[1]))
    total = sum(score for score, _ in scores)
    return best_number, (best_score / total if total > 0 else None)


def passage_sentences(passage: str, sentence_end: re.Pattern = SENTENCE_END) -> list[str]:
    """The passage's sentences (pieces between ``sentence_end`` matches), stripped, longer than one character."""
    return [s.strip() for s in sentence_end.split(passage) if len(s.strip()) > 1]


def extractive_answer(question: str, passage: str, max_sentences: int, max_chars: int,
                      sentence_end: re.Pattern = SENTENCE_END) -> str:
    """The ``max_sentences`` passage sentences closest to the question (bigram overlap), kept in passage
    order, cut at ``max_chars`` (``inference.fallback`` holds the defaults)."""
    sentences = passage_sentences(passage, sentence_end)
    if not sentences:
        return question.strip()[:max_chars]
    question_grams = bigrams(question)
    ranked = sorted(range(len(sentences)), key=lambda i: (-overlap(bigrams(sentences[i]), question_grams), i))
    chosen = sorted(ranked[:max_sentences])
    return " ".join(sentences[i] for i in chosen)[:max_chars].strip()
