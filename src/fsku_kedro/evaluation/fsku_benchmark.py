"""The released FSKU benchmark as a test table and a label table, and its split into dev and test.

mc_kor.csv (Domain, Sub_domain, Question) with its answers in mc_answer.csv (Answer, same row
order), and descriptive_kor.csv (Question, Answer, Keyword with comma-separated keywords).
A seeded hash of each question picks a fixed slice when a limit is set; rows keep file order.

The split is made once. **dev** holds the settings slice (the 200 multiple-choice and 20 descriptive
questions that chose the inference settings) and the validation questions (the next 200 and 20
outside it, by the held-out hash, seed 0: they choose recipes and rounds); **test** holds every other
question (600 and 68 of the released files) and serves final figures only. Validation refuses a
choice that would read a test question (``held_out_benchmark``); ``benchmark_split_sets`` gives either
split whole: dev for benchmarks that choose, test for final figures.
"""

from __future__ import annotations

import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion, DataContractError, LabelledAnswer, validate_records
from fsku_kedro.errors import UserInputError
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


# The split (module docstring): the settings slice, and the validation questions chosen outside it.
SETTINGS_SLICE = BenchmarkSliceSettings(mc_limit=200, descriptive_limit=20, seed=0)
WHOLE = BenchmarkSliceSettings(mc_limit=None, descriptive_limit=None)
VALIDATION_MC, VALIDATION_DESCRIPTIVE, VALIDATION_SEED = 200, 20, 0
Sets = dict[str, tuple[list[CompetitionQuestion], list[LabelledAnswer]]]


class SplitReadError(UserInputError):
    """A selection would read questions of the benchmark's test split."""


def _held_out_ids(questions: list[CompetitionQuestion], taken: set[str], mc_count: int, descriptive_count: int,
                  seed: int) -> set[str]:
    """``mc_count`` and ``descriptive_count`` question ids outside ``taken``, in the order of a seeded hash."""
    chosen: set[str] = set()
    for kind, limit in (("multiple_choice", mc_count), ("descriptive", descriptive_count)):
        rest = [q.ID for q in questions if q.question_type == kind and q.ID not in taken]
        chosen |= set(sorted(rest, key=lambda i: unit_hash(seed, "held_out", i))[:limit])
    return chosen


def _dev_ids(questions: list[CompetitionQuestion], mc: pd.DataFrame, mc_answers: pd.DataFrame,
             descriptive: pd.DataFrame) -> set[str]:
    """The ids of the dev split among ``questions`` (the whole benchmark, parsed)."""
    settings_slice = {q.ID for q in benchmark_set(mc, mc_answers, descriptive, SETTINGS_SLICE)[0]}
    return settings_slice | _held_out_ids(questions, settings_slice, VALIDATION_MC, VALIDATION_DESCRIPTIVE,
                                          VALIDATION_SEED)


def benchmark_split(mc: pd.DataFrame, mc_answers: pd.DataFrame, descriptive: pd.DataFrame) -> dict[str, set[str]]:
    """The question ids of the ``dev`` and ``test`` splits (module docstring)."""
    questions, _ = benchmark_set(mc, mc_answers, descriptive, WHOLE)
    dev = _dev_ids(questions, mc, mc_answers, descriptive)
    return {"dev": dev, "test": {q.ID for q in questions} - dev}


def _in_orders(questions: list[CompetitionQuestion], labels: list[LabelledAnswer], orders: list[str],
               seed: int) -> Sets:
    """``questions`` per option order: ``own`` as published, ``shuffled`` with each question's options
    shuffled by ``seed`` and its answer renumbered. Descriptive questions go with the first order only."""
    sets = {}
    for n, order in enumerate(orders):
        kept = questions if n == 0 else [q for q in questions if q.question_type == "multiple_choice"]
        ids = {q.ID for q in kept}
        if order == "own":
            sets[order] = (kept, [label for label in labels if label.ID in ids])
            continue
        positions = {q.ID: shuffled_order(q, seed) for q in kept if q.choices}
        sets[order] = ([shuffled(q, seed) if q.choices else q for q in kept], [
            label.model_copy(update={"answer": str(positions[label.ID].index(int(label.answer)) + 1)})
            if label.ID in positions else label for label in labels if label.ID in ids])
    return sets


def held_out_benchmark(mc: pd.DataFrame, mc_answers: pd.DataFrame, descriptive: pd.DataFrame,
                       settings: HeldOutBenchmarkSettings) -> Sets:
    """Questions and labels outside the ``settings.excluded`` slice: ``mc_questions`` and
    ``descriptive_questions`` of them chosen by a seeded hash (file order kept), per option order
    (``own``: as published; ``shuffled``: each question's options shuffled by the seed, the answer
    renumbered). Descriptive questions go with the first order only. A choice that reaches into the
    test split is refused: validation chooses, so it reads dev only."""
    questions, labels = benchmark_set(mc, mc_answers, descriptive, WHOLE)
    excluded, _ = benchmark_set(mc, mc_answers, descriptive, settings.excluded)
    chosen = _held_out_ids(questions, {q.ID for q in excluded}, settings.mc_questions,
                           settings.descriptive_questions, settings.seed)
    leaked = chosen - _dev_ids(questions, mc, mc_answers, descriptive)
    if leaked:
        raise SplitReadError(
            f"distillation.validation.fsku_benchmark would read {len(leaked)} questions of the FSKU benchmark's test "
            f"split (e.g. {min(leaked)}), which only final figures may read; validation chooses rounds, so it "
            f"takes at most {VALIDATION_MC} multiple-choice and {VALIDATION_DESCRIPTIVE} descriptive questions, seed "
            f"{VALIDATION_SEED}, outside the settings slice (evaluation/fsku_benchmark.py)")
    return _in_orders([q for q in questions if q.ID in chosen], [label for label in labels if label.ID in chosen],
                      settings.option_orders, settings.seed)


def benchmark_split_sets(mc: pd.DataFrame, mc_answers: pd.DataFrame, descriptive: pd.DataFrame, split: str,
                         orders: list[str], seed: int) -> Sets:
    """The ``split``'s (``dev`` or ``test``) questions and labels per option order (shuffled by ``seed``)."""
    if split not in ("dev", "test"):
        raise ValueError(f"the FSKU benchmark splits into dev and test, not {split!r}")
    questions, labels = benchmark_set(mc, mc_answers, descriptive, WHOLE)
    dev = _dev_ids(questions, mc, mc_answers, descriptive)
    kept = {q.ID for q in questions if (q.ID in dev) == (split == "dev")}
    return _in_orders([q for q in questions if q.ID in kept], [label for label in labels if label.ID in kept],
                      orders, seed)
