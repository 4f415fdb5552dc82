"""benchmarks/held_out_final.py's own arithmetic, on a small made-up benchmark: the test split in four
option orders, each answer recorded with the options as shown, and the mean over shuffle seeds with
its interval."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, MemoryDataset

from tests.conftest import benchmark_script
from tests.test_benchmark_split import _benchmark


@pytest.fixture(scope="module")
def script():
    yield from benchmark_script("held_out_final")


def _catalog(tables) -> DataCatalog:
    names = ("fsku_benchmark_mc", "fsku_benchmark_mc_answers", "fsku_benchmark_descriptive")
    return DataCatalog({name: MemoryDataset(table) for name, table in zip(names, tables)})


def test_test_split_orders_and_the_per_question_record(script):
    from fsku_kedro.evaluation.fsku_benchmark import benchmark_split

    tables = _benchmark()
    sets = script.held_out_sets(_catalog(tables), limit=None)
    test = {i for i in benchmark_split(*tables)["test"] if i.startswith("FSKU_MC")}
    assert list(sets) == ["own", "shuffled_0", "shuffled_1", "shuffled_2"]
    assert all({q.ID for q in questions} == test for questions, _ in sets.values())
    # A model that always answers 1, with made-up probabilities.
    answers = [{"order": order, "ID": q.ID, "answer": "1", "option_probabilities": [0.4, 0.3, 0.2, 0.1]}
               for order, (questions, _) in sets.items() for q in questions]
    record = script.report.answer_records(answers, sets)
    for order, (questions, labels) in sets.items():
        kept = record[order]
        assert kept["ID"] == [q.ID for q in questions]
        key = {label.ID: label.answer for label in labels}
        assert kept["expected"] == [key[i] for i in kept["ID"]]
        for question, shown, expected in zip(questions, kept["options_shown"], kept["expected"]):
            # The option shown at the expected position is the published answer.
            published = next(label.answer for label in sets["own"][1] if label.ID == question.ID)
            assert shown[int(expected) - 1] == int(published)
    assert record["own"]["options_shown"][0] == [1, 2, 3, 4]
    assert any(shown != [1, 2, 3, 4] for shown in record["shuffled_1"]["options_shown"])


def test_shuffled_figures_are_the_mean_over_seeds_with_a_t_interval(script):
    scores = {"benchmark_shuffled_0_mc_accuracy": 0.50, "benchmark_shuffled_1_mc_accuracy": 0.52,
              "benchmark_shuffled_2_mc_accuracy": 0.54, "benchmark_own_mc_accuracy": 0.9}
    figures = script.over_seeds(scores, "mc_accuracy")
    assert figures["shuffled_mc_accuracy"] == pytest.approx(0.52)
    low, high = figures["shuffled_mc_accuracy_interval"]
    assert (low, high) == pytest.approx((0.52 - 4.303 * 0.02 / 3 ** 0.5, 0.52 + 4.303 * 0.02 / 3 ** 0.5))
    assert script.over_seeds(scores, "negative_mc_accuracy") == {}


def test_models_are_labelled_and_judged_against_the_teacher(script):
    import argparse
    from pathlib import Path

    assert script.labelled("distilled=/m") == ("distilled", Path("/m"))
    for wrong in ("no-directory", "teacher=/m"):  # the teacher's labels are the script's own
        with pytest.raises(argparse.ArgumentTypeError):
            script.labelled(wrong)
    teacher = {"shuffled_mc_accuracy": 0.54}
    figures = {"teacher": teacher,
               "served": {"shuffled_mc_accuracy": 0.56, "time_ratio_to_teacher": 1.0},
               "small": {"shuffled_mc_accuracy": 0.50, "time_ratio_to_teacher": 0.7}}
    # served: at or above the teacher at its time (met); small: under it (missed), and more than 3
    # points under at <= 0.75x its time (missed).
    assert script.targets(figures, ["served"]) == [0]
    assert script.targets(figures, ["small"]) == [1, 1]


def test_the_moonshot_compares_one_pass_models_with_the_teachers_cyclic_accuracy(script, capsys):
    figures = {"teacher": {"cyclic": False, "shuffled_mc_accuracy": 0.53},
               "teacher_cyclic": {"cyclic": True, "shuffled_mc_accuracy": 0.60},
               "served": {"cyclic": False, "shuffled_mc_accuracy": 0.61},
               "small": {"cyclic": False, "shuffled_mc_accuracy": 0.50},
               "served_cyclic": {"cyclic": True, "shuffled_mc_accuracy": 0.70}}
    script.moonshot(figures)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["moonshot: served (0.610 shuffled, one pass) reaches the teacher's cyclic 0.600",
                     "moonshot: small (0.500 shuffled, one pass) does not reach the teacher's cyclic 0.600"]
    script.moonshot({"teacher": figures["teacher"], "served": figures["served"]})
    assert capsys.readouterr().out == ""


def test_the_frontier_is_drawn_with_and_without_the_teachers_cyclic_point(script, tmp_path):
    def point(ratio, shuffled, cyclic=False):
        return {"time_ratio_to_teacher": ratio, "shuffled_mc_accuracy": shuffled, "cyclic": cyclic,
                "shuffled_mc_accuracy_interval": [shuffled - 0.02, shuffled + 0.02],
                "benchmark_own_mc_accuracy": shuffled + 0.01}

    figures = {"teacher": point(1.0, 0.53), "served": point(0.95, 0.60)}
    for name, drawn in (("one_pass.png", figures), ("cyclic.png", {**figures, "teacher_cyclic": point(2.4, 0.58, True)})):
        script.plot_frontier(drawn, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recorded_answers_are_kept_only_for_the_same_weights_mode_and_questions(script):
    tables = _benchmark()
    sets = script.held_out_sets(_catalog(tables), limit=None)
    answers = [{"order": order, "ID": q.ID, "answer": "2", "option_probabilities": [0.1, 0.6, 0.2, 0.1]}
               for order, (questions, _) in sets.items() for q in questions]
    entry = {"weights": "abc", "cyclic": False, "run": {"date": "then"}, "shuffled_mc_accuracy": 0.5,
             "answers": script.report.answer_records(answers, sets)}
    assert script.recorded_entry(entry, "abc", False, sets) is entry
    assert script.recorded_entry(entry, "other", False, sets) is None  # another model
    assert script.recorded_entry(entry, "abc", True, sets) is None  # cyclic answers are another mode
    assert script.recorded_entry(None, "abc", False, sets) is None
    fewer = script.held_out_sets(_catalog(tables), limit=3)  # other questions
    assert script.recorded_entry(entry, "abc", False, fewer) is None
    # The same questions shown in another option order (a changed shuffle) are not the recorded ones.
    moved = {**entry, "answers": {**entry["answers"], "shuffled_1": entry["answers"]["shuffled_2"]}}
    assert script.recorded_entry(moved, "abc", False, sets) is None
    missing = {**entry, "answers": {k: v for k, v in entry["answers"].items() if k != "own"}}
    assert script.recorded_entry(missing, "abc", False, sets) is None
