"""The extractive fallback of descriptive questions under two sentence rules, on the FSKU benchmark's
108 descriptive questions and the knowledge base's top passage for each (../shared/fsku-benchmark,
read through the catalog; exits 2 when absent).

    python benchmarks/extractive_fallback.py [--env qwen_coder_cpu]

The fallback answers a descriptive question with the top passage's sentences closest to it
(``answering/fallback.py``). The earlier rule split a passage after any 다 or 요 followed by a space,
so a sentence was cut after words such as "2년마다" or "다음"; the current rule splits at sentence
punctuation and line breaks only. Both answer every question from the same passage; the table gives
the competition's descriptive score (cosine similarity and keyword recall against the reference) and
how many chosen pieces are not whole sentences (they end neither in sentence punctuation nor at a
line end of the passage: a heading or table row is whole). Target: no cut piece under the current
rule, and a descriptive score no lower than the earlier rule's. Records ``benchmarks/results/extractive_fallback.json``
(``extractive_fallback_<env>.json`` for another environment).
"""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np
from report import catalog_with_chunks, print_table, verdict, write_result

from fsku_kedro.answering import fallback
from fsku_kedro.answering.fallback_policy import clean_text
from fsku_kedro.evaluation.fsku_benchmark import benchmark_set
from fsku_kedro.evaluation.fsku_score import (
    COSINE_WEIGHT,
    KEYWORD_WEIGHT,
    DescriptiveItem,
    descriptive_scores,
)
from fsku_kedro.knowledge.passages import retrieve_passages
from fsku_kedro.parameters.inference import BenchmarkSliceSettings

EARLIER_RULE = re.compile(r"(?<=[.?!다요])\s+|\n+")
WHOLE = re.compile(r"[.?!]$")


def answers_under(rule: re.Pattern, questions, passages, settings) -> tuple[list[str], int, int]:
    """Each question's fallback answer with ``rule`` as the sentence splitter; the number of chosen
    pieces and how many of them were cut inside a line without sentence punctuation."""
    answers, pieces, cut = [], 0, 0
    for question in questions:
        top = passages[question.ID][0].text if passages.get(question.ID) else ""
        text = fallback.extractive_answer(question.parsed_question, top, settings.sentences, settings.max_chars, rule)
        answers.append(clean_text(text) or question.parsed_question)
        chosen = [s for s in fallback.passage_sentences(top, rule) if s in text]
        pieces += len(chosen)
        cut += sum(not WHOLE.search(s) and not re.search(re.escape(s) + r"[ \t]*(\n|$)", top) for s in chosen)
    return answers, pieces, cut


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=None, help="Kedro environment whose knowledge base answers (default: base)")
    args = parser.parse_args()
    catalog = catalog_with_chunks(args.env)
    descriptive = catalog.load("fsku_benchmark_descriptive")
    if descriptive.empty:
        print("FSKU benchmark files not found; nothing to measure")
        return 2
    questions, labels = benchmark_set(catalog.load("fsku_benchmark_mc"), catalog.load("fsku_benchmark_mc_answers"),
                                      descriptive, BenchmarkSliceSettings(mc_limit=0, descriptive_limit=None))
    embedder = catalog.load("embedder")
    retrieval, settings = catalog.load("params:retrieval"), catalog.load("params:inference").fallback
    passages, _ = retrieve_passages(questions, catalog.load("chunks"), catalog.load("bm25_index"),
                                    catalog.load("faiss_index"), embedder, catalog.load("reranker"), {}, retrieval)
    label = {item.ID: item for item in labels}
    figures, rows = {}, []
    for name, rule in (("earlier (after 다/요)", EARLIER_RULE), ("current (punctuation)", fallback.SENTENCE_END)):
        answers, pieces, cut = answers_under(rule, questions, passages, settings)
        cosine, recall = descriptive_scores(embedder, [DescriptiveItem(a, label[q.ID].answer, label[q.ID].keywords)
                                                       for a, q in zip(answers, questions)])
        score = float(COSINE_WEIGHT * np.mean(cosine) + KEYWORD_WEIGHT * np.mean(recall))
        figures[name] = {"descriptive_score": score, "cosine_similarity": float(np.mean(cosine)),
                         "keyword_recall": float(np.mean(recall)), "pieces": pieces, "cut_pieces": cut,
                         "answers": answers}
        rows.append([name, f"{score:.4f}", f"{np.mean(cosine):.4f}", f"{np.mean(recall):.4f}", pieces, cut])
    earlier, current = figures.values()
    changed = sum(a != b for a, b in zip(earlier["answers"], current["answers"]))
    print(f"{len(questions)} descriptive questions, top passage of the {args.env or 'base'} knowledge base; "
          f"{changed} answers differ between the rules")
    print_table(["sentence rule", "descriptive score", "cosine", "keyword recall", "pieces chosen", "cut pieces"], rows)
    met = current["cut_pieces"] == 0 and current["descriptive_score"] >= earlier["descriptive_score"]
    for entry in figures.values():
        entry.pop("answers")
    name = "extractive_fallback" + (f"_{args.env}" if args.env else "")
    write_result(name, {"env": args.env or "base", "questions": len(questions), "answers_changed": changed,
                        "rules": figures, "target_met": met})
    return verdict(met, "no cut sentence under the current rule, descriptive score >= the earlier rule's")


if __name__ == "__main__":
    sys.exit(main())
