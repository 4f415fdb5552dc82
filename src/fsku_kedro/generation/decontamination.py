"""Training text that repeats an evaluation question is dropped before it is trained on.

Text is compared in its normalised form (NFKC, lower case, letters and digits only, spaces removed).
Korean packs a word's meaning into a few syllables and joins particles to words, so word n-grams
(upstream uses 13-grams of English words) would miss a question copied with a particle changed.

Two rules, and a training text that meets either is a copy:

- **Whole item**: the two texts share at least ``min_shared`` character n-grams and at least
  ``min_containment`` of the n-grams of the shorter one (a question pasted with its options).
- **Stem**: the evaluation question's stem (its text without the numbered options) appears in the
  training text with at most ``stem_max_edit_share`` of its characters edited (substituted, inserted
  or deleted; at least one edit allowed), wherever it sits. Benchmarks are copied by keeping the stem
  and changing what surrounds it: a prompt template, the options shuffled or taken from another
  question, no options at all. Each of those dilutes the whole-item overlap, but leaves the stem
  whole. A changed particle is one or two edits. Stems shorter than ``stem_min_chars`` are too
  generic ("옳은 것은?") to mark a copy alone and are left to the whole-item rule.

The stem rule finds candidates with rapidfuzz's ``partial_ratio`` (the best window of the training
text against the stem), then counts the edits by approximate substring matching (Sellers' dynamic
programme: an edit distance in which the stem may start and end anywhere in the text).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from fsku_kedro.questions import split_options

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalised(text: str) -> str:
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())


def ngrams(text: str, size: int) -> set[str]:
    squashed = normalised(text)
    if len(squashed) < size:
        return {squashed} if squashed else set()
    return {squashed[i : i + size] for i in range(len(squashed) - size + 1)}


def substring_edits(needle: str, haystack: str) -> int:
    """The fewest edits (substitution, insertion, deletion) that make ``needle`` a substring of
    ``haystack``: Levenshtein distance with free leading and trailing text in the haystack.

    Row by row over the needle, each row vectorised over the haystack: a row's insertion chain
    ``D[j] = min(E[j], D[j-1] + 1)`` is ``j + cumulative min(E[k] - k)``."""
    text = np.frombuffer(haystack.encode("utf-32-le"), dtype=np.uint32)
    steps = np.arange(len(text) + 1)
    previous = np.zeros(len(text) + 1, dtype=np.int64)  # the empty needle matches anywhere at no cost
    for row, char in enumerate(needle, start=1):
        best = np.empty_like(previous)
        best[0] = row
        best[1:] = np.minimum(previous[:-1] + (text != ord(char)), previous[1:] + 1)
        previous = np.minimum.accumulate(best - steps) + steps
    return int(previous.min())


@dataclass(frozen=True)
class EvaluationItem:
    evaluation_set: str
    item_id: str
    text: str


@dataclass(frozen=True)
class Match:
    item: EvaluationItem
    rule: str  # "item" (n-gram containment of the whole item) or "stem" (the stem, edited or not)
    containment: float  # shared n-grams over those of the shorter text (reported for either rule)
    stem_edits: int | None  # edits between the stem and its place in the training text (stem rule)


@dataclass(frozen=True)
class StemRule:
    max_edit_share: float
    min_chars: int

    def allowed_edits(self, stem: str) -> int:
        return max(1, int(self.max_edit_share * len(stem)))

    @property
    def max_share(self) -> float:
        """The largest edits-per-character any stem long enough is allowed."""
        return max(self.max_edit_share, 1 / self.min_chars)


class ContaminationIndex:
    """Every evaluation item's n-grams and stem, for finding the item a training text repeats."""

    def __init__(self, items: list[EvaluationItem], size: int, min_containment: float, min_shared: int,
                 stem_rule: StemRule):
        self.items, self.size = items, size
        self.min_containment, self.min_shared = min_containment, min_shared
        self.stem_rule = stem_rule
        self._grams = [ngrams(item.text, size) for item in items]
        self._owners: dict[str, list[int]] = defaultdict(list)
        for index, grams in enumerate(self._grams):
            for gram in grams:
                self._owners[gram].append(index)
        stems = [normalised(split_options(item.text)[0]) for item in items]
        self._stem_items = [index for index, stem in enumerate(stems) if len(stem) >= stem_rule.min_chars]
        self._stems = [stems[index] for index in self._stem_items]

    def _shared(self, text: str) -> tuple[Counter[int], int]:
        grams = ngrams(text, self.size)
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(self._owners.get(gram, ()))
        return shared, len(grams)

    def _containment(self, index: int, shared: Counter[int], size: int) -> float:
        return shared[index] / max(1, min(len(self._grams[index]), size))

    def _item_match(self, text: str) -> Match | None:
        shared, size = self._shared(text)
        best = None
        for index, count in shared.items():
            containment = self._containment(index, shared, size)
            if count >= self.min_shared and containment >= self.min_containment and (
                    best is None or containment > best.containment):
                best = Match(self.items[index], "item", containment, None)
        return best

    def _stem_matches(self, texts: list[str]) -> list[Match | None]:
        """For each text, the stem it holds with the fewest edits per character, or None."""
        found: list[Match | None] = [None] * len(texts)
        if not self._stems or not texts:
            return found
        squashed = [normalised(text) for text in texts]
        # A stem of length L within e edits of a substring T' has a window of length L within
        # InDel distance 2e + |len(T') - L| <= 3e, so partial_ratio >= 100 * (1 - 1.5 e / L).
        cutoff = max(0.0, 100.0 * (1.0 - 1.5 * self.stem_rule.max_share) - 1.0)
        scores = process.cdist(squashed, self._stems, scorer=fuzz.partial_ratio, score_cutoff=cutoff,
                               dtype=np.float32, workers=-1)
        best: dict[int, tuple[float, int, int, int]] = {}
        for row, column in zip(*np.nonzero(scores)):
            stem, text = self._stems[column], squashed[row]
            if len(text) < len(stem) - self.stem_rule.allowed_edits(stem):
                continue
            edits = substring_edits(stem, text)
            if edits <= self.stem_rule.allowed_edits(stem):
                rank = (edits / len(stem), -len(stem), int(column), edits)
                if row not in best or rank < best[row]:
                    best[row] = rank
        for row, (_, _, column, edits) in best.items():
            index = self._stem_items[column]
            shared, size = self._shared(texts[row])
            found[row] = Match(self.items[index], "stem", self._containment(index, shared, size), edits)
        return found

    def match_all(self, texts: list[str]) -> list[Match | None]:
        """For each training text, the evaluation item it repeats (by its stem first), or None."""
        stems = self._stem_matches(texts)
        return [stem or self._item_match(text) for text, stem in zip(texts, stems)]

    def match(self, text: str) -> Match | None:
        return self.match_all([text])[0]
