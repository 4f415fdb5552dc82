"""docs/tables.py: the configuration reference read from the settings models' source, the tables
rendered from benchmark records, and the README's results block with its check."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import math
import re
import sys
from typing import Literal

import pytest
from pydantic import Field, PositiveInt

from fsku_kedro.parameters.base import Settings
from tests.conftest import PROJECT_ROOT

CPU_BF16 = "AMD EPYC (2 cores); SIMD: avx2 avx512_bf16 avx512f"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("docs_tables", PROJECT_ROOT / "docs" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


class Inner(Settings):
    """An inner block."""

    size: PositiveInt = 3  # how big


class Outer(Settings):
    """An outer block."""

    # The mode, chosen
    # over two lines.
    mode: Literal["a", "b"] = "a"
    rate: float = Field(0.5, ge=0.0, lt=1.0)  # a share
    described: int = Field(1, description="From the field itself.")
    bare: str | None = None
    inner: Inner = Inner(size=5)


class Derived(Outer):
    rate: float = 0.25


def _rows(tables, model, prefix, instance=None):
    return {row.key: row for row in tables.settings_rows(model, prefix, instance)}


def test_comments_are_read_from_the_source(tables):
    rows = _rows(tables, Outer, "outer", Outer())
    assert rows["outer.mode"].description == "The mode, chosen over two lines."
    assert rows["outer.mode"].type == "'a' or 'b'"
    assert rows["outer.rate"].description == "a share"
    assert rows["outer.rate"].type == "float ≥ 0.0, < 1.0"
    assert rows["outer.described"].description == "From the field itself."
    assert rows["outer.bare"].description == ""
    assert (rows["outer.bare"].type, rows["outer.bare"].default) == ("str or None", "null")
    # A nested block: its own row carries its docstring, its keys the parent's default for it.
    assert rows["outer.inner"].description == "An inner block."
    assert (rows["outer.inner.size"].type, rows["outer.inner.size"].default) == ("int > 0", "5")
    assert rows["outer.inner.size"].description == "how big"
    # A field declared again without a comment keeps the base class's.
    derived = _rows(tables, Derived, "derived", Derived())
    assert (derived["derived.rate"].default, derived["derived.rate"].description) == ("0.25", "a share")


def test_the_reference_covers_every_block_with_known_keys(tables):
    from fsku_kedro.parameters import ROOTS

    rows = {}
    for name, model in ROOTS.items():
        rows |= _rows(tables, model, name, model.model_validate({}))
    retrieval_k = rows["retrieval.k"]
    assert (retrieval_k.type, retrieval_k.default) == ("int > 0", "2")
    assert retrieval_k.description == "passages per question at inference (the report uses knowledge_base.report.ks)"
    assert rows["inference.generation.max_new_tokens"].default == "96"  # the block's own default, not 128
    assert rows["inference.mc_extraction"].description.startswith("How mc_method generate reads the number")
    assert rows["inference.max_fallback_share"].type == "float or None; ≥ 0.0, ≤ 1.0"
    assert rows["knowledge_base.chunking.overlap_ratio"].type == "float ≥ 0.0, < 0.5"
    assert rows["distillation.distillm.beta"].description.startswith("Weight of the rejected term")
    assert rows["distillation.schedule[].loss"].default == "required"
    assert "trl:DPOConfig" in rows["distillation.training"].description
    # teacher.generation redeclares cache_implementation without a comment: the base class's is used.
    cache = rows["teacher.generation.cache_implementation"]
    assert cache.default == "static" and cache.description.startswith("transformers only")
    assert rows["package.limits.gpu_memory_gb"].description == "one RTX 4090"
    page = tables.configuration_reference()
    for name in ROOTS:
        assert f"\n## {name}\n" in page
    assert "| `retrieval.k` | `int > 0` | `2` |" in page


def _record(figures, **extra):
    return {"command": "python benchmarks/example.py", "commit": COMMIT, "cpu": CPU_BF16,
            "date": "2026-12-07T00:00:00+00:00", **extra, "figures": figures}


def _scores(own, shuffled, seconds):
    return {"benchmark_own_mc_accuracy": own, "benchmark_own_negative_mc_accuracy": 0.25,
            "shuffled_mc_accuracy": shuffled, "shuffled_mc_accuracy_interval": [shuffled - 0.01, shuffled + 0.01],
            "shuffled_negative_mc_accuracy": 0.3, "seconds_per_question": seconds, "answers": {}}


def _held_out_test():
    run = {"command": "python benchmarks/held_out_final.py --model distilled=DIR", "commit": COMMIT, "cpu": CPU_BF16,
           "date": "2026-12-07T01:00:00+00:00"}
    teacher = {"model": "Teacher-1.5B", "cyclic": False, "run": run, **_scores(0.55, 0.54, 0.9),
               "time_ratio_to_teacher": 1.0}
    student = {"model": "Student-26L", "cyclic": False, "run": {**run, "commit": "fedcba9" + COMMIT[7:]},
               **_scores(0.5, 0.52, 0.8), "time_ratio_to_teacher": 0.8 / 0.9}
    return _record({"teacher": teacher, "distilled": student}, label="real models", dtype="bfloat16",
                   questions={"own": 600, "shuffled_0": 600},
                   evaluation="every MC question of the FSKU benchmark's test split")


def _history(folder):
    whole = _record({"nodes": [], "pipeline_s": 1.0, "sample_evaluation": {
        "questions": 52.0, "mc_questions": 44.0, "descriptive_questions": 8.0, "fsku_score": 0.7, "mc_accuracy": 0.6,
        "descriptive_score": 0.8, "fallbacks": 0.0}})
    final = _record({"teacher": {"model": "Teacher-1.5B", "benchmark_own_mc_accuracy": 0.55125,
                                 "benchmark_shuffled_mc_accuracy": 0.53875, "seconds_per_question": 0.86}},
                    dtype="bfloat16", evaluation="the 800 questions outside the settings slice")
    (folder / "whole_environment.qwen_coder_cpu.native_bf16.json").write_text(json.dumps(whole), encoding="utf-8")
    (folder / "held_out_final.native_bf16.json").write_text(json.dumps(final), encoding="utf-8")


def test_the_headline_block_reads_the_test_split_record(tables, tmp_path):
    (tmp_path / "held_out_test.native_bf16.json").write_text(json.dumps(_held_out_test()), encoding="utf-8")
    _history(tmp_path)  # present too, but the test split's record wins
    block = tables.readme_block(tmp_path)
    assert "History" not in block
    assert "| teacher | Teacher-1.5B | one pass | 0.550 | 0.540 | 0.530 to 0.550 | 0.300 | 0.90 | 1.00× |" in block
    assert "`fedcba9`, 2026-12-07T01:00:00+00:00" in block  # each entry's own run beside its row
    for named in ("Teacher-1.5B", CPU_BF16, "bfloat16", "`0123456`", "test split"):
        assert named in block


def test_an_entry_whose_answers_were_kept_names_the_run_that_timed_it(tables, tmp_path):
    record = _held_out_test()
    timed = {"command": "python benchmarks/held_out_final.py --model small=DIR", "commit": "abcdef1" + COMMIT[7:],
             "date": "2026-12-08T01:00:00+00:00"}
    record["figures"]["teacher"]["timed"] = timed
    (tmp_path / "held_out_test.native_bf16.json").write_text(json.dumps(record), encoding="utf-8")
    block = tables.readme_block(tmp_path)
    assert "`0123456`, 2026-12-07T01:00:00+00:00; timed at `abcdef1`, 2026-12-08T01:00:00+00:00 |" in block
    assert "`python benchmarks/held_out_final.py --model small=DIR` at `abcdef1`" in block


def test_the_headline_block_shows_the_serving_choice_with_the_chosen_setting_marked(tables, tmp_path):
    (tmp_path / "held_out_test.native_bf16.json").write_text(json.dumps(_held_out_test()), encoding="utf-8")
    run = {"command": "python benchmarks/serving_choices.py --model bf16=DIR", "commit": COMMIT,
           "date": "2026-12-07T04:00:00+00:00"}

    def entry(mc, minutes):
        return {"model": "Student-28L", "setting": "s", "run": run, "mc_accuracy": mc, "descriptive_score": 0.7,
                "fsku_score": (mc + 0.7) / 2, "mc_seconds_per_question": 1.0,
                "descriptive_seconds_per_question": 4.0, "fallbacks": 0, "projected_minutes": minutes}

    record = _record({"bf16: one pass, closed book": entry(0.6, 8.0), "bf16: cyclic, closed book": entry(0.65, 18.0)},
                     label="real models", dtype="bfloat16", questions={"multiple_choice": 400, "descriptive": 40},
                     budget_minutes=30.0, chosen="bf16: cyclic, closed book")
    (tmp_path / "serving_choices.native_bf16.json").write_text(json.dumps(record), encoding="utf-8")
    block = tables.readme_block(tmp_path)
    assert "chosen on the dev split" in block and "`benchmarks/results/serving_choices.native_bf16.json`" in block
    assert "| **bf16: cyclic, closed book** (chosen) | 0.650 | 0.700 | 0.675 | 1.00 | 4.00 | 0 | 18.0 |" in block
    assert "| bf16: one pass, closed book | 0.600 |" in block
    assert "within 30 minutes for 515 questions" in block


def test_without_the_test_split_the_block_is_history_and_never_fails(tables, tmp_path):
    assert "No headline results" in tables.readme_block(tmp_path)
    _history(tmp_path)
    block = tables.readme_block(tmp_path)
    assert block.startswith("**History.**")
    assert "| sample test.csv | 52 (44 MC, 8 descriptive) | 0.700 | 0.600 | 0.800 | 0 |" in block
    assert "| teacher | Teacher-1.5B | 0.551 | 0.539 |" in block
    assert "`auto` is bfloat16 on this CPU" in block  # the whole-environment record names no dtype


def test_check_and_write(tables, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "held_out_test.native_bf16.json").write_text(json.dumps(_held_out_test()), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nNo markers here.\n", encoding="utf-8")
    assert tables.main(["--check", str(readme), "--results", str(results)]) == 2
    assert tables.main(["--write", str(readme), "--results", str(results)]) == 2
    readme.write_text(f"# Title\n\n{tables.START}\nstale\n{tables.END}\n\nAfter.\n", encoding="utf-8")
    assert tables.main(["--check", str(readme), "--results", str(results)]) == 1
    assert "-stale" in capsys.readouterr().err
    assert tables.main(["--write", str(readme), "--results", str(results)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\n") and text.endswith(f"{tables.END}\n\nAfter.\n")
    assert tables.main(["--check", str(readme), "--results", str(results)]) == 0
    # A figure that changes in the record makes the block stale, and the difference names it.
    record = _held_out_test()
    record["figures"]["distilled"]["shuffled_mc_accuracy"] = 0.61
    (results / "held_out_test.native_bf16.json").write_text(json.dumps(record), encoding="utf-8")
    capsys.readouterr()
    assert tables.main(["--check", str(readme), "--results", str(results)]) == 1
    difference = capsys.readouterr().err
    assert "-| distilled | Student-26L | one pass | 0.500 | 0.520 |" in difference
    assert "+| distilled | Student-26L | one pass | 0.500 | 0.610 |" in difference


def test_every_committed_record_renders_with_its_own_renderer(tables, caplog):
    records = tables.load_records()
    assert records, "benchmarks/results holds the committed records"
    with caplog.at_level(logging.WARNING, logger=tables.__name__):
        for name, record in records.items():
            section = tables.record_section(name, record)
            for label in ("command", "commit", "models", "dtype", "questions"):
                assert f"- **{label}**:" in section, (name, label)
            assert "| " in section, name
    assert not caplog.records, [record.getMessage() for record in caplog.records]
    assert tables.readme_block(tables.RESULTS)  # the real folder, whichever headline it holds


def test_a_record_of_an_unexpected_shape_is_listed_plainly(tables, caplog):
    record = copy.deepcopy(_held_out_test())
    record["figures"] = {"teacher": ["not", "a", "mapping"]}
    with caplog.at_level(logging.WARNING, logger=tables.__name__):
        section = tables.record_section("held_out_test.native_bf16", record)
    assert "listed plainly" in section and "| `teacher` |" in section
    assert caplog.records


def test_a_figure_marker_renders_the_recorded_value(tables):
    records = {"run.cpu": {"figures": {"arm one": {"rounds": {"round_1": {"accuracy": 0.5751, "steps": 72}}},
                                       "rows": [{"seconds": 12.345}], "v1.2": {"share": 0.25}, "flag": True}}}
    text = ("reaches <!-- figure: run.cpu figures.arm one.rounds.round_1.accuracy --> shuffled in "
            "<!-- figure: run.cpu figures.arm one.rounds.round_1.steps --> steps, "
            "<!-- figure: run.cpu figures.rows.0.seconds | .1f --> s, "
            "<!-- figure: run.cpu figures.v1.2.share | .0% -->.")
    assert tables.expand_figures(text, records) == "reaches 0.575 shuffled in 72 steps, 12.3 s, 25%."
    assert tables.records_on_page(text, ["run.cpu", "other"]) == ["run.cpu"]
    for marker, reason in (("<!-- figure: gone figures.rows.0.seconds -->", "no record"),
                           ("<!-- figure: run.cpu figures.rows.3.seconds -->", "holds no figure"),
                           ("<!-- figure: run.cpu figures.arm one.rounds -->", "not a single figure"),
                           ("<!-- figure: run.cpu figures.flag -->", "not a single figure")):
        with pytest.raises(ValueError, match=reason):
            tables.expand_figures(marker, records)


# --- The documentation types no figure that a record holds ------------------------------------------

ACCURACY = re.compile(r"(?<![\d.])0\.\d{3}(?![\d])")
# A line that gives a figure no committed record holds says so; such a line is exempt.
EXEMPT = re.compile(r"\bunrecorded\b", flags=re.I)
MARKER = re.compile(r"<!--.*?-->")


def _recorded_values(value, found: set[str]) -> set[str]:
    """Every number anywhere in a record, to three decimals."""
    if isinstance(value, dict):
        for item in value.values():
            _recorded_values(item, found)
    elif isinstance(value, list):
        for item in value:
            _recorded_values(item, found)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        found.add(f"{value:.3f}")
    return found


def _typed_accuracies(text: str):
    """(line number, line, number) for every 0.ddd typed in the page's text, outside fenced code and
    outside markers."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            for match in ACCURACY.finditer(MARKER.sub("", line)):
                yield number, line, match.group()


def test_no_page_types_a_figure_its_records_hold(tables):
    """A page that shows records (``<!-- record: ... -->`` or ``<!-- figure: ... -->``) types none of
    their figures in accuracy style (0.ddd): the generated tables show them, or a figure marker reads
    one from its record. A figure of an earlier run that no committed record holds may be typed on a
    line that says ``unrecorded``."""
    records = tables.load_records()
    pages = sorted((PROJECT_ROOT / "docs").rglob("*.md"))
    assert pages
    typed = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        shown = tables.records_on_page(text, records)
        values = {name: _recorded_values(records[name], set()) for name in shown}
        for number, line, figure in _typed_accuracies(text):
            holders = [name for name, found in values.items() if figure in found]
            if holders and not EXEMPT.search(line):
                typed.append(f"docs/{page.relative_to(PROJECT_ROOT / 'docs')}:{number}: {figure} "
                             f"(held by {', '.join(holders)})")
    assert not typed, "figures typed by hand that a record holds:\n" + "\n".join(typed)


def test_the_guard_sees_a_typed_figure(tables):
    text = ("<!-- record: held_out_final.* -->\n\nThe student scores 0.480 in own order.\n"
            "Earlier it scored 0.480 (unrecorded run).\n```\nexample: 0.480\n```\n"
            "<!-- figure: held_out_final.native_bf16 figures.student.benchmark_own_mc_accuracy -->\n")
    found = list(_typed_accuracies(text))
    assert [(number, figure) for number, _, figure in found] == [(3, "0.480"), (4, "0.480")]
    assert [EXEMPT.search(line) is None for _, line, _ in found] == [True, False]
    records = tables.load_records()
    assert tables.records_on_page(text, records) == ["held_out_final.native_bf16"]
    assert "0.480" in _recorded_values(records["held_out_final.native_bf16"], set())


def test_every_figure_marker_in_the_docs_names_a_recorded_figure(tables):
    records = tables.load_records()
    for page in sorted((PROJECT_ROOT / "docs").rglob("*.md")):
        expanded = tables.expand_figures(page.read_text(encoding="utf-8"), records)  # raises on a bad marker
        assert "<!-- figure:" not in expanded, page
