"""benchmarks/distillation_arms.py's per-question answers: a round's kept validation answers become its
answer record, and only a single kept version whose accuracies equal the recorded ones fills a round."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import benchmark_script
from tests.test_benchmark_split import _benchmark

SEED = 0  # the validation seed: another would reach into the test split


@pytest.fixture(scope="module")
def script():
    yield from benchmark_script("distillation_arms")


@pytest.fixture
def sets(script, monkeypatch):
    from fsku_kedro.evaluation.fsku_benchmark import held_out_benchmark
    from fsku_kedro.parameters.distillation import HeldOutBenchmarkSettings

    chosen = held_out_benchmark(*_benchmark(), HeldOutBenchmarkSettings(mc_questions=20, descriptive_questions=2,
                                                                        seed=SEED))
    monkeypatch.setattr(script, "held_out_sets", lambda: (chosen, SEED))
    return chosen


def _kept_answers(folder, version: str, sets, right: int, first: int = 0) -> None:
    """A versioned validation_answers.csv of round_1 under ``folder`` answering ``right`` multiple-choice
    questions of each order right from the ``first`` on and the rest wrong, plus a descriptive row."""
    path = folder / "08_reporting" / "round_1" / "validation_answers.csv" / version / "validation_answers.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["ID", "answer", "order", "question_type", "option_probabilities"])
        writer.writeheader()
        writer.writerow({"ID": "FSKU_DESC_0001", "answer": "답", "order": "own", "question_type": "descriptive"})
        for order, (_, labels) in sets.items():
            for n, label in enumerate(label for label in labels if label.ID.startswith("FSKU_MC")):
                given = label.answer if first <= n < first + right else str(int(label.answer) % 4 + 1)
                writer.writerow({"ID": label.ID, "answer": given, "order": order, "question_type": "multiple_choice",
                                 "option_probabilities": json.dumps([0.1, 0.2, 0.3, 0.4])})


def _round(accuracy: float) -> dict:
    return {"benchmark_own_mc_accuracy": accuracy, "benchmark_shuffled_mc_accuracy": accuracy,
            "benchmark_shuffled_negative_mc_accuracy": 0.5}


def test_kept_answers_become_the_rounds_answer_record(script, sets, tmp_path):
    _kept_answers(tmp_path, "2026-01-01T00.00.00.000Z", sets, right=5)
    figures = {"arm": {"rounds": {"round_1": _round(5 / 20)}}}
    script.backfill_from_kept_answers(figures, [tmp_path])
    answers = figures["arm"]["rounds"]["round_1"]["answers"]
    assert set(answers) == {"own", "shuffled"}
    for order, (_, labels) in sets.items():
        labels = [label for label in labels if label.ID.startswith("FSKU_MC")]
        record = answers[order]
        assert record["ID"] == [label.ID for label in labels]
        assert record["expected"] == [label.answer for label in labels]
        assert sum(a == e for a, e in zip(record["answer"], record["expected"])) == 5
        assert record["probabilities"][0] == [0.1, 0.2, 0.3, 0.4]
    # The shuffled options as shown put the published answer where the expected answer points.
    published = {label.ID: label.answer for label in sets["own"][1] if label.ID.startswith("FSKU_MC")}
    shown = answers["shuffled"]
    assert all(options[int(expected) - 1] == int(published[question])
               for question, options, expected in zip(shown["ID"], shown["options_shown"], shown["expected"]))
    assert any(options != [1, 2, 3, 4] for options in shown["options_shown"])


def test_a_round_is_filled_only_from_a_single_matching_version(script, sets, tmp_path):
    _kept_answers(tmp_path, "2026-01-01T00.00.00.000Z", sets, right=5)
    _kept_answers(tmp_path, "2026-01-02T00.00.00.000Z", sets, right=8)
    _kept_answers(tmp_path, "2026-01-03T00.00.00.000Z", sets, right=5, first=10)  # same figures as the first
    figures = {"matches": {"rounds": {"round_1": _round(8 / 20)}},
               "no_version": {"rounds": {"round_1": _round(9 / 20)}},
               "two_versions": {"rounds": {"round_1": _round(5 / 20)}}}
    script.backfill_from_kept_answers(figures, [tmp_path])
    matched = figures["matches"]["rounds"]["round_1"]["answers"]["own"]
    assert sum(a == e for a, e in zip(matched["answer"], matched["expected"])) == 8
    # No version matches, or two match the figures but disagree on answers: the round stays without.
    assert "answers" not in figures["no_version"]["rounds"]["round_1"]
    assert "answers" not in figures["two_versions"]["rounds"]["round_1"]
