"""Training text that repeats an evaluation question is dropped before it is trained on.

Text is compared as character n-grams of its normalised form (NFKC, lower case, letters and digits
only, spaces removed). Korean packs a word's meaning into a few syllables and joins particles to
words, so word n-grams (upstream uses 13-grams of English words) would miss a question copied with
a particle changed; character n-grams are not split by such edits. A training text and an
evaluation question match when they share at least ``min_shared`` n-grams and at least
``min_containment`` of the n-grams of the shorter of the two: a question copied into a prompt
(whatever template surrounds it), a stem copied without its options and a near-copy with a word
or two changed are all found, while two different questions on the same law share far fewer.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalised(text: str) -> str:
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())


def ngrams(text: str, size: int) -> set[str]:
    squashed = normalised(text)
    if len(squashed) < size:
        return {squashed} if squashed else set()
    return {squashed[i : i + size] for i in range(len(squashed) - size + 1)}


@dataclass(frozen=True)
class EvaluationItem:
    evaluation_set: str
    item_id: str
    text: str


@dataclass(frozen=True)
class Match:
    item: EvaluationItem
    containment: float  # shared n-grams over those of the shorter text


class ContaminationIndex:
    """The n-grams of every evaluation item, for finding the item a training text repeats."""

    def __init__(self, items: list[EvaluationItem], size: int, min_containment: float, min_shared: int):
        self.items, self.size = items, size
        self.min_containment, self.min_shared = min_containment, min_shared
        self._grams = [ngrams(item.text, size) for item in items]
        self._owners: dict[str, list[int]] = defaultdict(list)
        for index, grams in enumerate(self._grams):
            for gram in grams:
                self._owners[gram].append(index)

    def match(self, text: str) -> Match | None:
        """The evaluation item ``text`` repeats most closely, or None."""
        grams = ngrams(text, self.size)
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(self._owners.get(gram, ()))
        best = None
        for index, count in shared.items():
            if count < self.min_shared:
                continue
            containment = count / min(len(self._grams[index]), len(grams))
            if containment >= self.min_containment and (best is None or containment > best.containment):
                best = Match(self.items[index], containment)
        return best
