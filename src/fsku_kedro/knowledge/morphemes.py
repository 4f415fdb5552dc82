"""Korean morpheme tokenisation for BM25: kiwipiepy (default) or KoNLPy's Okt."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cached_property

logger = logging.getLogger(__name__)

# Content-bearing part-of-speech tags (Sejong tag set as used by Kiwi): nouns, verb and
# adjective stems, roots, foreign words, Chinese characters and numbers.
KIWI_CONTENT_TAGS = ("NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "XR", "SL", "SH", "SN", "MAG")
OKT_CONTENT_TAGS = ("Noun", "Verb", "Adjective", "Alpha", "Number", "Foreign", "Adverb")
BACKENDS = ("kiwi", "okt")


class MorphemeTokenizer:
    """Turns text into lower-cased content morphemes; the analyser is built on first use."""

    def __init__(self, backend: str):
        if backend not in BACKENDS:
            raise ValueError(f"unknown morpheme backend {backend!r}; choose one of {BACKENDS}")
        self.backend = backend

    @cached_property
    def _engine(self):
        if self.backend == "kiwi":
            from kiwipiepy import Kiwi

            # One text at a time on one thread measured faster here than Kiwi's batched mode.
            return Kiwi(num_workers=1)
        from konlpy.tag import Okt

        return Okt()

    def tokenize(self, text: str) -> list[str]:
        return self.tokenize_many([text])[0]

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        texts = list(texts)
        if self.backend == "kiwi":
            results = (self._engine.tokenize(text) for text in texts)
            return [
                [token.form.lower() for token in tokens if token.tag.startswith(KIWI_CONTENT_TAGS)]
                for tokens in results
            ]
        return [
            [form.lower() for form, tag in self._engine.pos(text, norm=True, stem=True) if tag in OKT_CONTENT_TAGS]
            for text in texts
        ]
