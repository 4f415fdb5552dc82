"""Korean morpheme analysers for BM25: kiwipiepy vs KoNLPy Okt, milliseconds per sentence.

    python benchmarks/korean_tokenizers.py [--repeat 3]

Both analyse the same corpus sentences (after a warm-up that loads their dictionaries);
the table shows the median of the repeats. No target: the default (kiwi) must simply not be
slower than the alternative, or the benchmark exits non-zero.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from corpus_sentences import corpus_sentences
from report import print_table, verdict

from fsku_kedro.knowledge.cleaning import normalize_for_search
from fsku_kedro.knowledge.morphemes import MorphemeTokenizer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sentences = [normalize_for_search(s) for s in corpus_sentences()]
    results = {}
    for backend in ("kiwi", "okt"):
        tokenizer = MorphemeTokenizer(backend)
        tokenizer.tokenize_many(sentences[:20])  # warm-up: dictionaries, JVM start for Okt
        runs = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            tokens = tokenizer.tokenize_many(sentences)
            runs.append((time.perf_counter() - start) / len(sentences) * 1000)
        results[backend] = (statistics.median(runs), sum(map(len, tokens)) / len(tokens))
    print(f"{len(sentences)} corpus sentences, median of {args.repeat} runs")
    print_table(
        ["analyser", "ms / sentence", "content morphemes / sentence"],
        [[backend, f"{ms:.3f}", f"{per_sentence:.1f}"] for backend, (ms, per_sentence) in results.items()],
    )
    ratio = results["okt"][0] / results["kiwi"][0]
    return verdict(ratio >= 1.0, f"okt / kiwi time {ratio:.1f}x: the default (kiwi) is not the slower one")


if __name__ == "__main__":
    sys.exit(main())
