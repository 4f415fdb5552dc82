"""The FSKU score of a set of answers against labels, overall and per domain."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer, SubmissionRow
from fsku_kedro.evaluation.fsku_score import DescriptiveItem, descriptive_scores, fsku_score
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.plotting import use_korean_font

REPORT_COLUMNS = ["domain", "questions", "mc_questions", "mc_accuracy", "descriptive_questions",
                  "cosine_similarity", "keyword_recall", "descriptive_score", "fsku_score", "fallback_share",
                  "fallbacks", "fallback_reasons"]
TEXT_COLUMNS = {"domain", "fallback_reasons"}


def score_items(answers: list[SubmissionRow], questions: list[CompetitionQuestion], labels: list[LabelledAnswer],
                embedder: Embedder) -> pd.DataFrame:
    """One row per labelled answer: domain, kind, correct (MC) or cosine and keyword recall (descriptive)."""
    by_id = {q.ID: q for q in questions}
    given = {row.ID: row for row in answers}
    rows = []
    for label in labels:
        if label.ID not in by_id or label.ID not in given:
            continue
        answer = given[label.ID]
        rows.append({
            "ID": label.ID,
            "domain": label.domain,
            "question_type": by_id[label.ID].question_type,
            "answer": answer.answer,
            "expected": label.answer.strip(),
            "keywords": label.keywords,
            "used_fallback": answer.used_fallback,
            "fallback_reason": answer.fallback_reason if answer.used_fallback else "",
        })
    items = pd.DataFrame(rows, columns=["ID", "domain", "question_type", "answer", "expected", "keywords",
                                        "used_fallback", "fallback_reason"])
    mc = items["question_type"] == "multiple_choice"
    items["correct"] = np.where(mc, items["answer"].str.strip() == items["expected"], np.nan)
    descriptive = items[~mc]
    cosine, recall = descriptive_scores(embedder, [DescriptiveItem(r.answer, r.expected, r.keywords)
                                                   for r in descriptive.itertuples(index=False)])
    items["cosine_similarity"] = np.nan
    items["keyword_recall"] = np.nan
    items.loc[~mc, "cosine_similarity"] = cosine
    items.loc[~mc, "keyword_recall"] = recall
    return items


def _summary(domain: str, items: pd.DataFrame) -> dict[str, Any]:
    mc = items[items["question_type"] == "multiple_choice"]
    descriptive = items[items["question_type"] == "descriptive"]
    parts = fsku_score([bool(x) for x in mc["correct"]], descriptive["cosine_similarity"].to_numpy(float),
                       descriptive["keyword_recall"].to_numpy(float))
    reasons = items.loc[items["used_fallback"].astype(bool), "fallback_reason"].value_counts()
    return {"domain": domain, "questions": len(items), **parts,
            "fallback_share": float(items["used_fallback"].mean()) if len(items) else float("nan"),
            "fallbacks": int(reasons.sum()),
            "fallback_reasons": "; ".join(f"{reason or 'unknown'}: {n}" for reason, n in sorted(reasons.items()))}


def answer_report(items: pd.DataFrame) -> pd.DataFrame:
    """Overall ("all") then per-domain score parts of scored items."""
    rows = [_summary("all", items)] + [_summary(d, g) for d, g in sorted(items.groupby("domain"), key=lambda x: x[0])]
    return pd.DataFrame(rows).reindex(columns=REPORT_COLUMNS)


def report_metrics(report: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The overall row's parts, for MLflow."""
    if report.empty:
        return {}
    overall = report.iloc[0]
    return {column: {"value": float(overall[column]), "step": 0} for column in REPORT_COLUMNS
            if column not in TEXT_COLUMNS and pd.notna(overall[column])}


def report_figure(report: pd.DataFrame, title: str) -> plt.Figure:
    """FSKU score, MC accuracy and descriptive score per domain."""
    use_korean_font()
    figure, axis = plt.subplots(figsize=(8, 3.8))
    if report.empty or not report["questions"].sum():
        axis.text(0.5, 0.5, "no labelled answers", ha="center", va="center")
        axis.set_axis_off()
    else:
        shown = report.fillna(0.0)
        positions = np.arange(len(shown))
        width = 0.27
        for offset, column in zip((-width, 0.0, width), ("fsku_score", "mc_accuracy", "descriptive_score")):
            axis.bar(positions + offset, shown[column], width, label=column)
        axis.set_xticks(positions, [f"{d}\n(n={int(n)})" for d, n in zip(shown["domain"], shown["questions"])],
                        fontsize=8)
        axis.set_ylim(0, 1)
        axis.legend(fontsize=8)
    axis.set_title(title)
    figure.tight_layout()
    return figure


def answer_distribution_figure(answers: list[SubmissionRow], questions: list[CompetitionQuestion],
                               labels: list[LabelledAnswer]) -> plt.Figure:
    """Share of each option number among the multiple-choice answers, per domain (from the labels;
    "all" when there are none), beside the same share among the correct answers where known."""
    by_label = {label.ID: label for label in labels}
    kinds = {q.ID: q.question_type for q in questions}
    rows = [{"domain": by_label[a.ID].domain if a.ID in by_label else "all", "given": a.answer,
             "expected": by_label[a.ID].answer if a.ID in by_label else None}
            for a in answers if kinds.get(a.ID) == "multiple_choice"]
    table = pd.DataFrame(rows, columns=["domain", "given", "expected"])
    use_korean_font()
    figure, axis = plt.subplots(figsize=(8, 3.8))
    if table.empty:
        axis.text(0.5, 0.5, "no multiple-choice answers", ha="center", va="center")
        axis.set_axis_off()
        return figure
    numbers = sorted({*table["given"], *table["expected"].dropna()}, key=lambda n: int(n) if n.isdigit() else 99)
    domains_sorted = sorted(table["domain"].unique())
    shares = {side: table.groupby("domain")[side].value_counts(normalize=True).unstack(fill_value=0.0)
              .reindex(index=domains_sorted, columns=numbers, fill_value=0.0) for side in ("given", "expected")}
    positions = np.arange(len(domains_sorted))
    colours = plt.get_cmap("tab10")
    for offset, side, hatch in ((-0.2, "given", None), (0.2, "expected", "//")):
        bottom = np.zeros(len(domains_sorted))
        for k, number in enumerate(numbers):
            values = shares[side][number].to_numpy()
            axis.bar(positions + offset, values, 0.38, bottom=bottom, color=colours(k % 10), hatch=hatch,
                     label=number if side == "given" else None, edgecolor="white")
            bottom += values
    axis.set_xticks(positions, [f"{d}\n(answers | key)" for d in domains_sorted], fontsize=8)
    axis.set_ylabel("share of answers")
    axis.set_ylim(0, 1)
    axis.legend(title="option", fontsize=8, ncol=2)
    axis.set_title("Multiple-choice answers per domain: given (left) and answer key (right, hatched)")
    figure.tight_layout()
    return figure
