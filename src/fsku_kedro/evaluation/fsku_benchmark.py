"""The released FSKU benchmark as a test table and a label table.

mc_kor.csv (Domain, Sub_domain, Question) with its answers in mc_answer.csv (Answer, same row
order), and descriptive_kor.csv (Question, Answer, Keyword with comma-separated keywords).
A seeded hash of each question picks a fixed slice when a limit is set; rows keep file order.
"""

from __future__ import annotations

import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion, DataContractError, LabelledAnswer, validate_records
from fsku_kedro.hashing import unit_hash
from fsku_kedro.parameters.distillation import HeldOutBenchmarkSettings
from fsku_kedro.parameters.inference import BenchmarkSliceSettings
from fsku_kedro.questions import parse_test_table, shuffled, shuffled_order

QUESTION_COLUMNS = ["ID", "Question"]
LABEL_COLUMNS = ["ID", "question_type", "answer", "keywords", "domain"]


def mc_id(position: int) -> str:
    return f"FSKU_MC_{position:04d}"


def descriptive_id(position: int) -> str:
    return f"FSKU_DESC_{position:03d}"


def _slice(frame: pd.DataFrame, limit: int | None, seed: int, salt: str) -> pd.DataFrame:
    if limit is None or limit >= len(frame):
        return frame
    order = sorted(frame.index, key=lambda i: unit_hash(seed, salt, frame.at[i, "Question"]))
    return frame.loc[sorted(order[:limit])]


def benchmark_tables(mc: pd.DataFrame, mc_answers: pd.DataFrame, descriptive: pd.DataFrame,
                     settings: BenchmarkSliceSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(questions in test.csv layout, labels); empty tables when the benchmark files are absent."""
    if len(mc) != len(mc_answers):
        raise DataContractError(
            f"FSKU benchmark: {len(mc)} multiple-choice questions but {len(mc_answers)} answers; "
            "mc_answer.csv must have one row per row of mc_kor.csv"
        )
    seed = settings.seed
    mc = mc.assign(Answer=mc_answers["Answer"].to_numpy()).reset_index(drop=True)
    mc = mc.assign(ID=[mc_id(i) for i in range(len(mc))])
    descriptive = descriptive.reset_index(drop=True)
    descriptive = descriptive.assign(ID=[descriptive_id(i) for i in range(len(descriptive))])
    mc = _slice(mc, settings.mc_limit, seed, "fsku_mc")
    descriptive = _slice(descriptive, settings.descriptive_limit, seed, "fsku_descriptive")
    questions = pd.concat([mc[QUESTION_COLUMNS], descriptive[QUESTION_COLUMNS]], ignore_index=True)
    labels = pd.concat([
        pd.DataFrame({"ID": mc["ID"], "question_type": "multiple_choice", "answer": mc["Answer"].astype(str),
                      "keywords": "", "domain": mc["Domain"]}),
        pd.DataFrame({"ID": descriptive["ID"], "question_type": "descriptive", "answer": descriptive["Answer"],
                      "keywords": [";".join(k.strip() for k in str(v).split(",") if k.strip())
                                   for v in descriptive["Keyword"]],
                      "domain": "서술형"}),
    ], ignore_index=True).reindex(columns=LABEL_COLUMNS)
    return questions.reindex(columns=QUESTION_COLUMNS), labels


def benchmark_set(mc: pd.DataFrame, mc_answers: pd.DataFrame, descriptive: pd.DataFrame,
                  settings: BenchmarkSliceSettings) -> tuple[list[CompetitionQuestion], list[LabelledAnswer]]:
    """The benchmark's (slice of) questions, parsed, and their labels."""
    questions, labels = benchmark_tables(mc, mc_answers, descriptive, settings)
    parsed = parse_test_table(questions, "FSKU benchmark") if len(questions) else []
    return parsed, validate_records(labels.to_dict("records"), LabelledAnswer, source="FSKU benchmark labels")


def held_out_benchmark(mc: pd.DataFrame, mc_answers: pd.DataFrame, descriptive: pd.DataFrame,
                       settings: HeldOutBenchmarkSettings) -> dict[str, tuple[list[CompetitionQuestion], list[LabelledAnswer]]]:
    """Questions and labels outside the ``settings.excluded`` slice: ``mc_questions`` and
    ``descriptive_questions`` of them chosen by a seeded hash (file order kept), per option order
    (``own``: as published; ``shuffled``: each question's options shuffled by the seed, the answer
    renumbered). Descriptive questions go with the first order only."""
    questions, labels = benchmark_set(mc, mc_answers, descriptive, BenchmarkSliceSettings(mc_limit=None,
                                                                                          descriptive_limit=None))
    excluded, _ = benchmark_set(mc, mc_answers, descriptive, settings.excluded)
    taken = {q.ID for q in excluded}
    chosen: set[str] = set()
    for kind, limit in (("multiple_choice", settings.mc_questions), ("descriptive", settings.descriptive_questions)):
        rest = [q.ID for q in questions if q.question_type == kind and q.ID not in taken]
        chosen |= set(sorted(rest, key=lambda i: unit_hash(settings.seed, "held_out", i))[:limit])
    questions = [q for q in questions if q.ID in chosen]
    labels = [label for label in labels if label.ID in chosen]
    sets = {}
    for n, order in enumerate(settings.option_orders):
        kept = questions if n == 0 else [q for q in questions if q.question_type == "multiple_choice"]
        if order == "own":
            sets[order] = (kept, [label for label in labels if label.ID in {q.ID for q in kept}])
            continue
        orders = {q.ID: shuffled_order(q, settings.seed) for q in kept if q.choices}
        sets[order] = ([shuffled(q, settings.seed) if q.choices else q for q in kept], [
            label.model_copy(update={"answer": str(orders[label.ID].index(int(label.answer)) + 1)})
            if label.ID in orders else label for label in labels if label.ID in {q.ID for q in kept}])
    return sets
