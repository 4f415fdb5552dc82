"""Tables generated from the project's own sources, for the documentation site and the README.

- ``configuration_reference()``: every key of every parameters block (``fsku_kedro.parameters.ROOTS``),
  nested blocks flattened with dotted names, with its type, its default and the comment that documents
  it in the settings model's source.
- ``record_section()``: a committed benchmark record (``benchmarks/results/<name>.json``) as Markdown: what
  it measured (command, commit, CPU, models, dtype, questions) and its figures as tables, one renderer
  per record shape.
- ``expand_figures()``: a page's ``<!-- figure: NAME PATH [| SPEC] -->`` markers replaced by the one
  recorded figure each names, so a number in running text is read from its record, never typed.
- ``readme_block()``: the headline results table that README.md holds between ``<!-- results:start -->``
  and ``<!-- results:end -->``.

    python docs/tables.py --check README.md   # exit 1, showing the difference, when the block is stale
    python docs/tables.py --write README.md   # rewrite the block from the records
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import functools
import inspect
import io
import json
import logging
import math
import re
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"
NOT_RECORDED = "not recorded"

log = logging.getLogger(__name__)


# --- Markdown helpers ------------------------------------------------------------------------------

def code(text: object) -> str:
    """``text`` as an inline code span (longer fences where it holds backticks)."""
    text = str(text)
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(value: object) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    # Pipes end a cell unless they sit inside a code span.
    return text if "`" in text else text.replace("|", r"\|")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fixed(value: object, digits: int = 3) -> str:
    return "–" if _missing(value) else f"{value:.{digits}f}"


def seconds(value: object) -> str:
    return "–" if _missing(value) else f"{value:,.1f}"


def share(value: object) -> str:
    return "–" if _missing(value) else f"{value:.1%}"


def times(value: object) -> str:
    return "–" if _missing(value) else f"{value:.2f}×"


# --- The configuration reference -------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One key of a parameters block, as the reference shows it."""

    key: str
    type: str
    default: str
    description: str


@functools.lru_cache(maxsize=None)
def declared_comments(model: type) -> dict[str, str]:
    """Each field declared in ``model``'s own class body and the comment that documents it there: the
    comment ending its line (or lines), after the comment lines right above it. Fields without one are
    left out."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    trailing: dict[int, str] = {}
    whole_line: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            text = token.string.lstrip("#").strip()
            (trailing if lines[row - 1][:column].strip() else whole_line)[row] = text
    found = {}
    for statement in ast.parse(source).body[0].body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        above: list[str] = []
        row = statement.lineno - 1
        while row in whole_line:
            above.insert(0, whole_line[row])
            row -= 1
        after = [trailing[r] for r in range(statement.lineno, (statement.end_lineno or statement.lineno) + 1)
                 if r in trailing]
        if above or after:
            found[statement.target.id] = " ".join(above + after)
    return found


def field_description(model: type, name: str) -> str:
    """The field's ``description=``, else its comment in the nearest class that declares it with one."""
    described = model.model_fields[name].description
    if described:
        return described
    from pydantic import BaseModel

    for cls in model.__mro__[:model.__mro__.index(BaseModel)]:  # the models' own classes, not pydantic's
        if declared_comments(cls).get(name):
            return declared_comments(cls)[name]
    return ""


def own_docstring(cls: type) -> str:
    """The class's own docstring (not one inherited from a base), cleaned."""
    doc = cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))


def _constraints(metadata: Iterable[object]) -> list[str]:
    found = []
    for item in metadata:
        for attribute, sign in _BOUNDS:
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{sign} {value}")
        length = getattr(item, "min_length", None)
        if length is not None:
            found.append("non-empty" if length == 1 else f"at least {length} items")
        pattern = getattr(item, "pattern", None)
        if pattern:
            found.append(f"matching {pattern}")
    return found


def type_text(annotation: Any, metadata: Sequence[object] = ()) -> str:
    """A field's type as a reader writes it: ``int > 0``, ``'kiwi' or 'okt'``, ``float or None``."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(arguments[0], [*arguments[1:], *metadata])
    if origin is typing.Literal:
        text = " or ".join(repr(argument) for argument in arguments)
    elif origin in (typing.Union, types.UnionType):
        text = " or ".join(type_text(argument) for argument in arguments)
    elif annotation is type(None):
        text = "None"
    elif annotation is typing.Any:
        text = "any"
    elif origin is not None:
        text = f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_text(a) for a in arguments)}]"
    else:
        text = getattr(annotation, "__name__", str(annotation))
    bounds = ", ".join(_constraints(metadata))
    if not bounds:
        return text
    return f"{text}; {bounds}" if " or " in text else f"{text} {bounds}"


def value_text(value: Any) -> str:
    """A default as it is written in a parameters file (YAML, one line)."""
    import yaml
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        value = value.model_dump()
    elif isinstance(value, list):
        value = [item.model_dump() if isinstance(item, BaseModel) else item for item in value]
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _model_of(annotation: Any) -> type | None:
    from pydantic import BaseModel

    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _list_item_model(annotation: Any) -> type | None:
    """``M`` for a field typed ``list[M]`` (or ``list[M] | None``) with ``M`` a settings model."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    for option in options:
        if typing.get_origin(option) is list and typing.get_args(option):
            found = _model_of(typing.get_args(option)[0])
            if found is not None:
                return found
    return None


def settings_rows(model: type, prefix: str, instance: Any = None) -> list[Setting]:
    """Every key under ``model``, nested models flattened (``prefix.block.key``). Defaults come from
    ``instance`` (the block as validated from nothing, so a nested block's own defaults show) where
    given, else from the field declarations; a list of models shows its items' keys as ``key[].name``."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        description = field_description(model, name)
        if instance is not None:
            value = getattr(instance, name)
        elif field.is_required():
            value = None
        else:
            value = field.get_default(call_default_factory=True)
        nested = _model_of(field.annotation)
        if nested is not None:
            extra = getattr(nested, "config_class", "")
            note = f"Also takes any field of {code(extra)}." if extra else ""
            text = " ".join(part for part in (description or own_docstring(nested), note) if part)
            rows.append(Setting(key, nested.__name__, "", text))
            rows.extend(settings_rows(nested, key, value))
            continue
        rows.append(Setting(key, type_text(field.annotation, field.metadata),
                            "required" if instance is None and field.is_required() else value_text(value),
                            description))
        item = _list_item_model(field.annotation)
        if item is not None:
            rows.extend(settings_rows(item, f"{key}[]"))
    return rows


def configuration_reference() -> str:
    """The reference page: one section per parameters block, one table row per key."""
    from fsku_kedro.parameters import ROOTS

    parts = [
        "# Configuration reference",
        "Every parameters block and every key in it, generated from the typed settings models in "
        "`src/fsku_kedro/parameters/` when the site is built. The models hold the only defaults; "
        "`conf/<env>/parameters*.yml` and `--params` override single keys. A default is the value a run "
        "uses when nothing sets the key (`python -m fsku_kedro.parameters --block NAME` prints the values "
        "an environment resolves to). The descriptions are the comments beside each field in the models' "
        "source; a key without one has none here.",
        "Blocks: " + ", ".join(f"[{name}](#{name})" for name in ROOTS) + ".",
    ]
    for name, model in ROOTS.items():
        parts.append(f"## {name}")
        module_doc = inspect.cleandoc(sys.modules[model.__module__].__doc__ or "")
        for doc in (module_doc, own_docstring(model)):
            if doc:
                parts.append(doc)
        parts.append(f"Model: {code(model.__module__ + '.' + model.__name__)}.")
        rows = settings_rows(model, name, model.model_validate({}))
        parts.append(table(["key", "type", "default", "description"],
                           [[code(row.key), code(row.type), code(row.default) if row.default else "",
                             row.description] for row in rows]))
    return "\n\n".join(parts) + "\n"


# --- Benchmark records -----------------------------------------------------------------------------

def load_records(folder: Path = RESULTS) -> dict[str, dict]:
    """Every record under ``folder``, by file name without ``.json`` (``main_job.no_bf16``)."""
    return {path.name.removesuffix(".json"): json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(folder.glob("*.json"))}


def short_commit(commit: object) -> str:
    """A 40-digit commit as its first 7 digits, keeping what follows it (``+changes``, a note)."""
    if not commit:
        return NOT_RECORDED
    match = re.fullmatch(r"([0-9a-f]{7})[0-9a-f]{33}(.*)", str(commit), flags=re.S)
    return match[1] + match[2] if match else str(commit)


def _auto_dtype(cpu: str) -> str:
    """What the compute dtype ``auto`` resolves to on a CPU of this line (models/compute_dtype.py)."""
    return "bfloat16" if re.search(r"\b(avx512_bf16|amx\w*)\b", cpu) else "float32"


def models_text(record: dict) -> str:
    models = record.get("models")
    if isinstance(models, dict):
        return "; ".join(f"{role}: {name}" for role, name in models.items() if role != "dtype")
    if models:
        return str(models)
    if record.get("model"):
        return str(record["model"])
    figures = record.get("figures", {})
    entries = list(figures.values()) if isinstance(figures, dict) else []
    entries += list(figures.get("distillation_rounds", {}).values()) if isinstance(figures, dict) else []
    named = [entry["model"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("model"), str)]
    if named:
        return ", ".join(dict.fromkeys(named))
    return str(record.get("shapes") or NOT_RECORDED)


def dtype_text(record: dict) -> str:
    cpu = str(record.get("cpu", ""))
    if models_text(record).startswith("none"):
        return "none (no model)"
    figures = record.get("figures", {})
    holders = (record, record.get("models"), figures, record.get("settings"))
    found = next((holder["dtype"] for holder in holders if isinstance(holder, dict) and holder.get("dtype")), None)
    if found == "auto" and cpu:
        return f"auto ({_auto_dtype(cpu)} on this CPU)"
    if found:
        return str(found)
    if isinstance(figures, dict) and any(isinstance(entry, dict) and "dtype" in entry for entry in figures.values()):
        return "per row (below)"
    if cpu:
        return f"{NOT_RECORDED}; `auto` is {_auto_dtype(cpu)} on this CPU"
    return NOT_RECORDED


def questions_text(record: dict) -> str:
    for key in ("evaluation", "copies_of"):
        if record.get(key):
            return str(record[key])
    figures = record.get("figures")
    questions = record.get("questions") or (figures.get("questions") if isinstance(figures, dict) else None)
    if isinstance(questions, dict):
        return ", ".join(f"{count} ({order})" for order, count in questions.items())
    if questions:
        return f"{questions} questions"
    if isinstance(figures, dict) and any(key.endswith("_evaluation") for key in figures):
        return "named in each row of the tables"
    if record.get("prompts"):
        return f"{record['prompts']} prompts"
    if record.get("fsku_benchmark_slice"):
        return "the sample test.csv and the FSKU benchmark slice (`fsku_benchmark_slice: true`)"
    return NOT_RECORDED


def record_facts(name: str, record: dict) -> list[tuple[str, str]]:
    """What a table must name: the record, its command, commit, date, CPU (or GPU), models, dtype and
    question set, and its label where it has one."""
    facts = [("record", code(f"benchmarks/results/{name}.json")),
             ("command", code(record["command"]) if record.get("command") else NOT_RECORDED),
             ("commit", code(short_commit(record.get("commit")))),
             ("date", str(record.get("date") or NOT_RECORDED))]
    if record.get("gpu"):
        facts.append(("GPU", str(record["gpu"])))
    facts += [("CPU", code(record["cpu"]) if record.get("cpu") else NOT_RECORDED),
              ("models", models_text(record)), ("dtype", dtype_text(record)), ("questions", questions_text(record))]
    label = record.get("label") or record.get("kind")
    if label:
        facts.append(("label", str(label)))
    return facts


# One renderer per record shape: each takes the record and returns its figures as Markdown tables.

def _node_times(figures: dict, threshold: float) -> str:
    nodes, total = figures["nodes"], figures["pipeline_s"]
    slowest = {node["node"] for node in sorted(nodes, key=lambda node: -node["seconds"])[:3]}
    attempts = any("attempts" in node for node in nodes)
    shown = [node for node in nodes if node["seconds"] >= threshold]
    rest = [node for node in nodes if node["seconds"] < threshold]
    rows = [[code(node["node"]) + (" *" if node["node"] in slowest else "") + (" (failed)" if node.get("failed")
                                                                               else ""),
             seconds(node["seconds"]), share(node["seconds"] / total),
             *([node.get("attempts", "")] if attempts else [])]
            for node in shown]
    rest_s = sum(node["seconds"] for node in rest)
    rows.append([f"the other {len(rest)} nodes (each under {threshold:g} s)", seconds(rest_s), share(rest_s / total),
                 *([""] if attempts else [])])
    rows.append(["**the pipeline in all**", f"**{seconds(total)}**", "100 %", *([figures.get("attempts", "")]
                                                                               if attempts else [])])
    header = ["node (* the three slowest)", "seconds", "share", *(["attempts"] if attempts else [])]
    summary = [f"{label} {seconds(figures[key])} s" for key, label in
               (("kedro_run_s", "`kedro run`"), ("setup_s", "set-up"), ("package_s", "package"))
               if figures.get(key) is not None]
    return table(header, rows) + ("\n\n" + "; ".join(summary) + "." if summary else "")


def render_main_job(record: dict) -> str:
    text = _node_times(record["figures"], 5.0)
    if record.get("target_s"):
        met = record["figures"]["pipeline_s"] <= record["target_s"]
        text += f" Target: the pipeline within {seconds(record['target_s'])} s, {'met' if met else 'missed'}."
    return text


def _evaluation_row(label: str, evaluation: dict) -> list[str]:
    return [label, f"{evaluation.get('questions', 0):g} ({evaluation.get('mc_questions', 0):g} MC, "
                   f"{evaluation.get('descriptive_questions', 0):g} descriptive)",
            fixed(evaluation.get("fsku_score")), fixed(evaluation.get("mc_accuracy")),
            fixed(evaluation.get("descriptive_score")), f"{evaluation.get('fallbacks', 0):g}"]


def _rounds_table(rounds: dict) -> str:
    rows = [[name, entry.get("model", ""), fixed(entry.get("benchmark_own_mc_accuracy")),
             fixed(entry.get("benchmark_shuffled_mc_accuracy")),
             f"{fixed(entry.get('benchmark_own_negative_mc_accuracy'))} / "
             f"{fixed(entry.get('benchmark_shuffled_negative_mc_accuracy'))}",
             fixed(entry.get("benchmark_own_descriptive_score")), fixed(entry.get("fsku_score")),
             fixed(entry.get("token_kl"))] for name, entry in rounds.items()]
    return table(["round", "model", "held-out MC, own order", "held-out MC, shuffled", "negated stems, own / shuffled",
                  "held-out descriptive", "sample FSKU score", "token KL"], rows)


def render_whole_environment(record: dict) -> str:
    figures = record["figures"]
    parts = [_node_times(figures, 20.0)]
    evaluations = [(label, figures[key]) for key, label in (("sample_evaluation", "sample test.csv"),
                                                            ("fsku_benchmark_evaluation", "FSKU benchmark slice"))
                   if key in figures]
    if evaluations:
        parts.append(table(["served answers on", "questions", "FSKU score", "MC accuracy", "descriptive score",
                            "fallbacks"], [_evaluation_row(label, evaluation) for label, evaluation in evaluations]))
    if figures.get("distillation_rounds"):
        parts.append(_rounds_table(figures["distillation_rounds"]))
    package, replay = figures.get("package", {}), figures.get("replay", {})
    if package or replay:
        report = package.get("report", {})
        rows = [["archive", f"{seconds(package.get('archive_mb'))} MB"],
                ["seconds per question (this run)", fixed(report.get("seconds_per_question"), 2)],
                ["projected minutes for the competition's questions", seconds(report.get("projected_minutes"))]]
        rows += [[f"limit: {check['name']}", f"{fixed(check['measured'], 2)} of {check['limit']:g} {check['unit']}, "
                  f"{'met' if check['met'] else 'missed'}"] for check in report.get("limit_checks", [])]
        if replay:
            rows.append(["offline replay", f"{seconds(replay.get('seconds'))} s, exit code {replay.get('exit_code')}, "
                         f"byte-identical: {'yes' if replay.get('byte_identical') else 'no'}"])
        parts.append(table(["package", "figure"], rows))
    return "\n\n".join(parts)


def render_cpu_dtype_speed(record: dict) -> str:
    rows = []
    for setting, entry in record["figures"].items():
        fp32, bf16 = entry["seconds"]["float32"], entry["seconds"]["bfloat16"]
        for kernel in fp32:
            if "GFLOPS" in kernel:
                rows.append([setting, entry["capability"], kernel, f"{fp32[kernel]:.1f}", f"{bf16[kernel]:.1f}",
                             "", ""])
            else:
                rows.append([setting, entry["capability"], kernel, fixed(fp32[kernel]), fixed(bf16[kernel]),
                             f"{bf16[kernel] / fp32[kernel]:.1f}×", entry["auto"]])
    return table(["ISA setting", "PyTorch kernels", "kernel", "float32 s", "bfloat16 s", "bf16 / fp32", "auto"], rows)


def _present(rows: list[dict], key: str) -> bool:
    return any(not _missing(row.get(key)) for row in rows)


def _picks(answered: object) -> str:
    if isinstance(answered, dict):
        return " / ".join(str(answered[key]) for key in sorted(answered, key=str))
    if isinstance(answered, list):
        return " / ".join(str(count) for count in answered)
    return ""


def render_variants(record: dict) -> str:
    """Model variants answering the same questions (real_teacher_quality.py's records)."""
    figures = record["figures"]
    entries = list(figures.values())
    reference = figures.get("float32", {})
    columns: list[tuple[str, Callable[[dict], str]]] = []
    if _present(entries, "dtype"):
        columns.append(("dtype", lambda e: e.get("dtype", "")))
    columns.append(("MC accuracy", lambda e: fixed(e.get("mc_accuracy"))))
    if reference.get("mc_accuracy"):
        columns.append(("share of float32", lambda e: share(e["mc_accuracy"] / reference["mc_accuracy"])))
    if _present(entries, "descriptive_score"):
        columns += [("descriptive score", lambda e: fixed(e.get("descriptive_score"))),
                    ("FSKU score", lambda e: fixed(e.get("fsku_score")))]
    if _present(entries, "perplexity"):
        def perplexity(entry: dict) -> str:
            if _missing(entry.get("perplexity")):
                return "–"
            base = reference.get("perplexity")
            rise = f" ({entry['perplexity'] / base - 1:+.1%})" if base and entry is not reference else ""
            return f"{entry['perplexity']:.2f}{rise}"
        columns.append(("perplexity", perplexity))
    if _present(entries, "quantize_cpu_s"):
        columns.append(("quantization CPU s", lambda e: seconds(e.get("quantize_cpu_s"))))
    if _present(entries, "size_mb"):
        columns.append(("MB", lambda e: f"{e['size_mb']:,.0f}" if not _missing(e.get("size_mb")) else "–"))
    columns += [("s / question", lambda e: fixed(e.get("seconds_per_question"), 2)),
                ("CPU s / question", lambda e: fixed(e.get("cpu_seconds_per_question"), 2))]
    if _present(entries, "forward_passes"):
        columns.append(("forward passes", lambda e: str(e.get("forward_passes", ""))))
    columns += [("fallbacks", lambda e: str(e.get("fallbacks", ""))),
                ("answered 1/2/3/4", lambda e: _picks(e.get("answered")))]
    rows = [[name, *(render(entry) for _, render in columns)] for name, entry in figures.items()]
    text = table(["variant", *(title for title, _ in columns)], rows)
    key = next((entry["key"] for entry in entries if entry.get("key")), None)
    return text + (f"\n\nAnswer key 1/2/3/4: {_picks(key)}." if key else "")


def render_student_depth(record: dict) -> str:
    rows = []
    for name, entry in record["figures"].items():
        raw, pride = entry.get("raw", {}), entry.get("pride", {})
        rows.append([name, entry.get("layers", ""), fixed(raw.get("mc_accuracy")), fixed(pride.get("mc_accuracy")),
                     fixed(entry.get("perplexity"), 2), fixed(entry.get("cpu_seconds_per_sequence"), 1),
                     _picks(raw.get("answered")), "partial" if entry.get("partial") else "",
                     code(entry["cpu"]) if entry.get("cpu") else "", entry.get("dtype", "")])
    return table(["candidate", "layers", "MC raw", "MC with PriDe", "perplexity", "CPU s / sequence",
                  "raw picks 1/2/3/4", "finished", "CPU (per candidate)", "dtype"], rows)


def render_width_compensation(record: dict) -> str:
    rows = []
    for name, entry in record["figures"].items():
        settings = entry.get("settings", {})
        rows.append([name, settings.get("mlp_channels", "all"), settings.get("mlp_compensation_damping", "–"),
                     entry["passages"] if settings else "–", fixed(entry.get("perplexity"), 2),
                     seconds(entry.get("derive_seconds")) if settings else "–"])
    return table(["candidate", "MLP channels", "ridge damping", "calibration passages",
                  "held-out perplexity", "derivation s"], rows)


def _ran_at(text: str) -> tuple[str, str]:
    """A ``ran_at`` stamp as its commit (or its whole text when it starts with none) and the rest."""
    match = re.match(r"([0-9a-f]{7,40})\b\s*(.*)", text, flags=re.S)
    return (code(match[1][:7]), match[2]) if match else (text, "")


def render_distillation_arms(record: dict) -> str:
    """Each arm's rounds (round 0: the undistilled student in that run), with where the arm ran."""
    rows, notes = [], []
    for arm, entry in record["figures"].items():
        # ``ran_at`` (a recorded earlier run) names where it ran; else the entry's own run stamp.
        ran_at, note = (_ran_at(str(entry["ran_at"])) if "ran_at" in entry
                        else (_run_stamp(entry), ""))
        if note:
            notes.append(f"{code(arm)}: {ran_at} {note}")
        for name, scores in entry.get("rounds", {}).items():
            rows.append([code(arm), name.removeprefix("round_"), fixed(scores.get("benchmark_own_mc_accuracy")),
                         fixed(scores.get("benchmark_shuffled_mc_accuracy")),
                         f"{fixed(scores.get('benchmark_own_negative_mc_accuracy'))} / "
                         f"{fixed(scores.get('benchmark_shuffled_negative_mc_accuracy'))}",
                         fixed(scores.get("benchmark_own_descriptive_score")), fixed(scores.get("fsku_score")),
                         fixed(scores.get("token_kl")), seconds(entry.get("pipeline_seconds")), ran_at])
    text = table(["arm", "round", "held-out MC, own order", "held-out MC, shuffled", "negated stems, own / shuffled",
                  "held-out descriptive", "sample FSKU score", "token KL", "pipeline s", "ran at"], rows)
    return text + ("\n\nWhere the arms ran, in full:\n\n" + "\n".join(f"- {note}" for note in notes) if notes else "")


def render_held_out_final(record: dict) -> str:
    rows = [[label, entry.get("model", ""), fixed(entry.get("benchmark_own_mc_accuracy")),
             fixed(entry.get("benchmark_shuffled_mc_accuracy")),
             f"{fixed(entry.get('benchmark_own_negative_mc_accuracy'))} / "
             f"{fixed(entry.get('benchmark_shuffled_negative_mc_accuracy'))}",
             fixed(entry.get("seconds_per_question"), 2)] for label, entry in record["figures"].items()]
    return table(["label", "model", "MC, own order", "MC, shuffled", "negated stems, own / shuffled",
                  "s / question"], rows)


def _run_stamp(entry: dict) -> str:
    run = entry.get("run")
    if isinstance(run, dict):
        stamp = f"{code(short_commit(run.get('commit')))}, {run.get('date', NOT_RECORDED)}"
        timed = entry.get("timed")  # answers kept from an earlier run, timed in a later one
        if isinstance(timed, dict):
            stamp += f"; timed at {code(short_commit(timed.get('commit')))}, {timed.get('date', NOT_RECORDED)}"
        return stamp
    return str(entry.get("ran_at", ""))


def render_held_out_test(record: dict) -> str:
    """Models against the teacher on the test split, each entry with the run that measured it."""
    rows = []
    for label, entry in record["figures"].items():
        interval = entry.get("shuffled_mc_accuracy_interval") or [None, None]
        rows.append([label, entry.get("model", ""), "cyclic" if entry.get("cyclic") else "one pass",
                     fixed(entry.get("benchmark_own_mc_accuracy")), fixed(entry.get("shuffled_mc_accuracy")),
                     f"{fixed(interval[0])} to {fixed(interval[1])}", fixed(entry.get("shuffled_negative_mc_accuracy")),
                     fixed(entry.get("seconds_per_question"), 2), times(entry.get("time_ratio_to_teacher")),
                     _run_stamp(entry)])
    text = table(["label", "model", "answers", "MC, own order", "MC, shuffled (mean of seeds)", "95 % interval",
                  "negated stems, shuffled", "s / question", "time against the teacher", "run (commit, date)"], rows)
    runs = {}
    for entry in record["figures"].values():
        for run in (entry.get("run"), entry.get("timed")):
            if isinstance(run, dict) and run.get("command"):
                runs.setdefault(run["command"], run)
    if runs:
        text += "\n\nRuns: " + "; ".join(
            f"{code(command)} at {code(short_commit(run.get('commit')))}"
            + (f" on {code(run['cpu'])}" if run.get("cpu") and run["cpu"] != record.get("cpu") else "")
            for command, run in runs.items()) + "."
    return text


def render_serving_choices(record: dict) -> str:
    """Each model under each serving setting on the dev split, with the projection for the competition
    and the setting chosen (the best FSKU score within the budget)."""
    best = record.get("chosen")
    rows = [[f"**{name}** (chosen)" if name == best else name, fixed(f.get("mc_accuracy")),
             fixed(f.get("descriptive_score")), fixed(f.get("fsku_score")),
             fixed(f.get("mc_seconds_per_question"), 2), fixed(f.get("descriptive_seconds_per_question"), 2),
             f.get("fallbacks", "–"), fixed(f.get("projected_minutes"), 1), _run_stamp(f)]
            for name, f in record["figures"].items()]
    budget = record.get("budget_minutes")
    return (table(["model: setting", "MC accuracy", "descriptive", "FSKU score", "s / MC question",
                   "s / descriptive question", "fallbacks", "minutes for 515", "run (commit, date)"], rows)
            + (f"\n\nChosen: the best dev FSKU score within {fixed(budget, 0)} minutes for 515 questions."
               if budget is not None and best else ""))


def render_vllm_speed(record: dict) -> str:
    figures = record["figures"]
    responses, descriptive = figures["responses"], figures["descriptive"]
    mc, targets = figures["mc"], figures["choice_targets"]

    def row(work: str, measured: str, before: float, after: float, unit: str = " s / q", digits: int = 2) -> list:
        return [work, measured, f"{fixed(before, digits)}{unit}", f"{fixed(after, digits)}{unit}",
                times(before / after)]

    work = [
        row("responses", f"{responses['prompts']} prompts, ≤ {responses['max_new_tokens']} tokens",
            responses["transformers_s"], responses["vllm_s"], " s", 1),
        row("descriptive answers", f"{descriptive['questions']} questions, ≤ {descriptive['max_new_tokens']} tokens",
            descriptive["transformers_s_per_question"], descriptive["vllm_s_per_question"]),
        row("cyclic MC", f"{mc['cyclic_questions']} questions, every rotation",
            mc["transformers_cyclic_s_per_question"], mc["vllm_cyclic_s_per_question"]),
        row("one-pass MC", f"{mc['questions']} questions", mc["transformers_one_pass_s_per_question"],
            mc["vllm_one_pass_s_per_question"], digits=3),
        row("choice targets", f"{targets['questions']} questions, {targets['rows']} rows",
            targets["transformers_s_per_question"], targets["vllm_s_per_question"]),
    ]
    agreement = [
        [f"MC questions with another top option (of {mc['questions']})", mc["vllm_different_top_option"],
         mc["noise_different_top_option"]],
        ["largest option-probability difference", fixed(mc["vllm_largest_probability_difference"]),
         fixed(mc["noise_largest_probability_difference"])],
        [f"MC accuracy, one pass ({mc['questions']} questions)", f"{fixed(mc['vllm_one_pass_accuracy'])} "
         f"(transformers {fixed(mc['transformers_one_pass_accuracy'])})", ""],
        [f"MC accuracy, cyclic ({mc['cyclic_questions']} questions)", f"{fixed(mc['vllm_cyclic_accuracy'])} "
         f"(transformers {fixed(mc['transformers_cyclic_accuracy'])})", ""],
        ["choice targets: same top option, largest difference",
         f"{round(targets['same_top_option'] * targets['questions'])} of {targets['questions']}, "
         f"{fixed(targets['largest_target_difference'])}", ""],
        [f"identical greedy responses ({responses['max_new_tokens']} tokens)", fixed(responses["identical_texts"], 2),
         fixed(responses["identical_texts_noise"], 2) + f" (batches of {responses['batch_size']} against 4)"],
        ["identical descriptive answers", fixed(descriptive["identical_texts"], 2), ""],
    ]
    return (table(["work", "measured on", "transformers", "vLLM", "speed-up"], work) + "\n\n"
            + table(["agreement", "vLLM against transformers", "transformers against itself (batching only)"],
                    agreement)
            + f"\n\nvLLM engine load: {seconds(figures.get('engine_load_s'))} s.")


def render_gpu_scale(record: dict) -> str:
    figures = record["figures"]
    steps = figures["distillation_step"]
    parts = [table(["one DistiLLM-2 step", "peak GiB", "above weights GiB", "step s", "tokens/s"],
                   [[name, fixed(entry["peak_gib"], 2), fixed(entry["above_weights_gib"], 2),
                     fixed(entry["step_s"], 2), f"{entry['tokens_per_s']:,.0f}" if "/" not in name
                     else fixed(entry["tokens_per_s"], 2)] for name, entry in steps.items()])]
    choice = figures["inference"]["multiple_choice"]
    parts.append(table(["choice scoring", "questions", "questions/s", "minutes", "peak GiB"],
                       [[name, entry["questions"], f"{entry['questions_per_s']:.1f}",
                         fixed(entry["minutes_for_515"], 2), fixed(entry["peak_gib"], 2)]
                        for name, entry in choice.items()]))
    described = figures["inference"].get("descriptive", {})
    parts.append(table(["descriptive generation", "questions in one batch", "new tokens", "seconds", "tokens/s"],
                       [[name, entry["questions"], entry["new_tokens"], seconds(entry["seconds"]),
                         f"{entry['tokens_per_s']:.1f}"] for name, entry in described.items()]))
    sizes = record.get("sizes")
    if sizes:
        parts.append("Sizes: " + ", ".join(f"{key} {value}" for key, value in sizes.items()) + ".")
    return "\n\n".join(parts)


def render_teacher_signal_speed(record: dict) -> str:
    rows = [[mode, seconds(entry["seconds_per_step"]), entry["steps_timed"], entry["cache_hits"], entry["cache_misses"],
             f"{entry['loss']:.4f}"] for mode, entry in record["figures"].items()]
    text = table(["teacher signal", "s / step", "steps timed", "cache hits", "cache misses", "loss"], rows)
    settings = record.get("settings", {})
    if settings:
        text += "\n\nSettings: " + ", ".join(f"{key} {value_text(value)}" for key, value in settings.items()) + "."
    if record.get("speedup"):
        text += f" Reading the cache against the teacher every step: {record['speedup']}× faster."
    return text


def render_generation_batch_size(record: dict) -> str:
    figures = record["figures"]
    rows = [[row["batch_size"], seconds(row["seconds"]), fixed(row["seconds_per_prompt"], 2),
             fixed(row["tokens_per_s"], 2), row["tokens"], row["answers_differing_from_first"]]
            for row in figures["rows"]]
    first = figures["rows"][0]["batch_size"] if figures["rows"] else ""
    return table(["batch size", f"seconds ({record.get('prompts', '')} prompts)", "s / prompt", "tokens/s", "tokens",
                  f"answers differing from batch {first}"], rows)


def render_shared_prefix_speed(record: dict) -> str:
    figures = record["figures"]
    rows = [[mode, seconds(figures[mode]["seconds"]), figures[mode]["forward_passes"],
             f"{figures[mode]['token_positions']:,}"] for mode in ("whole", "shared") if mode in figures]
    return (table(["rows run", "seconds", "forward passes", "token positions"], rows)
            + f"\n\n{figures['questions']} questions, {figures['rows']} rows (every cyclic rotation), "
              f"{figures.get('dtype', '')}: {figures['speedup']}× faster shared; {figures['same_answers']} of "
              f"{figures['questions']} answers the same; largest option-probability difference "
              f"{figures['max_probability_difference']:.1e}.")


def render_extractive_fallback(record: dict) -> str:
    figures = record["figures"]
    rows = [[rule, fixed(entry["descriptive_score"], 4), fixed(entry["cosine_similarity"], 4),
             fixed(entry["keyword_recall"], 4), entry["pieces"], entry["cut_pieces"]]
            for rule, entry in figures["rules"].items()]
    return (table(["sentence rule", "descriptive score", "cosine", "keyword recall", "pieces", "cut pieces"], rows)
            + f"\n\nEnvironment {code(figures['env'])}, {figures['questions']} FSKU descriptive questions; "
              f"{figures['answers_changed']} fallback answers changed between the rules.")


def render_decontamination(record: dict) -> str:
    copies = {name: entry for name, entry in record["figures"].items() if "caught" in entry}
    clean = {name: entry for name, entry in record["figures"].items() if "dropped" in entry}
    parts = []
    if copies:
        parts.append(table(["copy of an FSKU question", "prompts", "caught", "share", "named the copied question",
                            "by the stem rule", "by the n-gram rule alone"],
                           [[name, entry["prompts"], entry["caught"], share(entry["share"]),
                             entry["named_the_copied_question"], entry["by_stem_rule"],
                             entry["caught_by_the_item_rule_alone"]] for name, entry in copies.items()]))
    if clean:
        parts.append(table(["clean prompts", "prompts", "dropped", "dropped by the n-gram rule alone"],
                           [[name, entry["prompts"], entry["dropped"], entry["dropped_by_the_item_rule_alone"]]
                            for name, entry in clean.items()]))
    settings = record.get("settings", {})
    if settings:
        parts.append("Settings: " + ", ".join(f"{key} {value}" for key, value in settings.items()) + ".")
    return "\n\n".join(parts)


def render_choice_target_gain(record: dict) -> str:
    figures = record["figures"]
    rows = [[name, fixed(figures[f"{prefix}_accuracy"]), _picks(figures[f"{prefix}_picks"]),
             fixed(figures[f"{prefix}_by_stem"]["negative_stems"]), fixed(figures[f"{prefix}_by_stem"]["other_stems"])]
            for name, prefix in (("one pass", "one_pass"), ("cyclic average", "cyclic"))]
    rows.append(["answer key", "", _picks(figures["key"]), "", ""])
    return table(["teacher", "MC accuracy, options shuffled", "picks 1/2/3/4",
                  f"negated stems ({figures['negative_stems']})", "other stems"], rows)


def _flat(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flat(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and (len(value) > 8 or any(isinstance(item, (dict, list)) for item in value)):
        yield prefix, f"({len(value)} items)"
    else:
        yield prefix, value


def render_generic(record: dict) -> str:
    """Any other record: its figures as key and value, nested keys dotted."""
    def shown(value: Any) -> str:
        if isinstance(value, float):
            return "–" if math.isnan(value) else f"{value:.4g}"
        return str(value)

    rows = [[code(key), shown(value)] for key, value in _flat(record.get("figures", {}))]
    return table(["figure", "value"], rows)


RENDERERS: tuple[tuple[str, Callable[[dict], str]], ...] = (
    ("main_job", render_main_job),
    ("whole_environment", render_whole_environment),
    ("cpu_dtype_speed", render_cpu_dtype_speed),
    ("real_teacher_", render_variants),
    ("student_depth", render_student_depth),
    ("width_compensation", render_width_compensation),
    ("distillation_arms", render_distillation_arms),
    ("held_out_final", render_held_out_final),
    ("held_out_test", render_held_out_test),
    ("serving_choices", render_serving_choices),
    ("vllm_speed", render_vllm_speed),
    ("gpu_scale", render_gpu_scale),
    ("teacher_signal_speed", render_teacher_signal_speed),
    ("generation_batch_size", render_generation_batch_size),
    ("shared_prefix_speed", render_shared_prefix_speed),
    ("extractive_fallback", render_extractive_fallback),
    ("decontamination", render_decontamination),
    ("choice_target_gain", render_choice_target_gain),
)


def renderer_for(name: str) -> Callable[[dict], str]:
    return next((render for prefix, render in RENDERERS if name.startswith(prefix)), render_generic)


def render_figures(name: str, record: dict) -> str:
    """The record's tables; a record whose shape its renderer does not know is listed plainly, with a note."""
    render = renderer_for(name)
    try:
        return render(record)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as error:
        log.warning("%s: %s cannot read this record (%r); listing its figures plainly", name, render.__name__, error)
        return (f"*This record's shape is not the one {code(render.__name__)} reads; its figures are listed "
                "plainly.*\n\n" + render_generic(record))


def record_section(name: str, record: dict, image: str | None = None) -> str:
    """A record as a page section: what it measured (a list of its stamp), its tables, and its figure
    (``image``: the path of the record's .png relative to the page) where it has one."""
    facts = "\n".join(f"- **{label}**: {value}" for label, value in record_facts(name, record))
    parts = [facts, render_figures(name, record)]
    if image:
        parts.append(f"![Figure of the record {name}]({image})")
    return "\n\n".join(parts)


# --- Markers in a page's text ----------------------------------------------------------------------

# ``<!-- record: NAME -->`` on a line of its own: the section of every record whose name matches NAME
# (``*`` matches any characters); docs/gen_pages.py expands it.
RECORD = re.compile(r"^<!-- record: (?P<pattern>\S+) -->[ \t]*$", flags=re.M)

# ``<!-- figure: NAME PATH -->`` or ``<!-- figure: NAME PATH | SPEC -->``: the value at the dotted PATH of
# the record NAME (list items by index), formatted with the Python format SPEC (floats default to .3f).
FIGURE = re.compile(r"<!-- figure: (?P<name>\S+) (?P<path>[^|>]+?)(?: \| (?P<spec>[^>]*?))? -->")


def figure_value(record: dict, path: str) -> Any:
    """The value at ``path`` in ``record``; a key may hold dots or spaces (the longest key that exists
    is taken first). Raises KeyError naming the path where nothing is found."""
    value, parts = record, path.split(".")
    while parts:
        if isinstance(value, list) and parts[0].isdigit() and int(parts[0]) < len(value):
            value, parts = value[int(parts[0])], parts[1:]
            continue
        keys = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
        key = next((key for key in keys if isinstance(value, dict) and key in value), None)
        if key is None:
            raise KeyError(path)
        value, parts = value[key], parts[len(key.split(".")):]
    return value


def figure_text(records: dict[str, dict], name: str, path: str, spec: str | None = None) -> str:
    """One recorded figure as text, for ``<!-- figure: ... -->``; raises ValueError when the record or
    the path does not exist, so a page never shows a figure its record lacks."""
    if name not in records:
        raise ValueError(f"no record benchmarks/results/{name}.json")
    try:
        value = figure_value(records[name], path)
    except KeyError:
        raise ValueError(f"benchmarks/results/{name}.json holds no figure {path!r}") from None
    if isinstance(value, (dict, list, bool)):
        raise ValueError(f"benchmarks/results/{name}.json: {path!r} is not a single figure")
    if spec:
        return format(value, spec)
    return fixed(value) if isinstance(value, float) else str(value)


def records_on_page(text: str, names: Iterable[str]) -> list[str]:
    """The records of ``names`` that a page's text shows: by a record marker or a figure marker."""
    patterns = [match["pattern"] for match in RECORD.finditer(text)]
    quoted = {match["name"] for match in FIGURE.finditer(text)}
    return [name for name in names
            if name in quoted or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)]


def expand_figures(text: str, records: dict[str, dict]) -> str:
    """``text`` with every figure marker replaced by the figure it names."""
    return FIGURE.sub(lambda match: figure_text(records, match["name"], match["path"], match["spec"]), text)


# --- The README's headline block -------------------------------------------------------------------

HEADLINE = ("held_out_test.native_bf16", "held_out_test.no_bf16")
HISTORY = ("whole_environment.qwen_coder_cpu.native_bf16", "held_out_final.native_bf16")
SERVING = ("serving_choices.native_bf16", "serving_choices.no_bf16")


def _read(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _stamp_line(name: str, record: dict) -> str:
    return "; ".join(f"{label}: {value}" for label, value in record_facts(name, record)) + "."


def readme_block(folder: Path = RESULTS, image_prefix: str = "benchmarks/results/") -> str:
    """The headline results, rendered from the records: the test split's record where it exists, else
    the newest records of the whole environment and of the held-out questions, marked as history.
    ``image_prefix``: where the record's figure is found from the page (README.md: the records' folder)."""
    for name in HEADLINE:
        record = _read(folder, name)
        if record is not None:
            parts = ["**Headline: models against the teacher on the FSKU benchmark's test split** (generated from "
                     f"{code(f'benchmarks/results/{name}.json')} by `python docs/tables.py --write README.md`).",
                     _stamp_line(name, record), render_figures(name, record)]
            if (folder / f"{name}.png").is_file():
                parts.append(f"![Test accuracy against time per question]({image_prefix}{name}.png)")
            for serving in SERVING:
                if (choices := _read(folder, serving)) is not None:
                    parts += [f"**How the model is served, chosen on the dev split** (from "
                              f"{code(f'benchmarks/results/{serving}.json')}).", _stamp_line(serving, choices),
                              render_figures(serving, choices)]
                    break
            return "\n\n".join(parts)
    found = [(name, record) for name in HISTORY if (record := _read(folder, name)) is not None]
    if not found:
        return ("No headline results are recorded yet (`benchmarks/results/held_out_test.<cpu kind>.json`, "
                "written by `benchmarks/held_out_final.py`).")
    parts = ["**History.** No record of the FSKU test split yet (`benchmarks/results/held_out_test.<cpu kind>.json`, "
             "written by `benchmarks/held_out_final.py`); these are the newest earlier records (generated by "
             "`python docs/tables.py --write README.md`)."]
    titles = {"whole_environment": "The whole `qwen_coder_cpu` environment from a fresh clone, served answers",
              "held_out_final": "The distilled student against its teacher on the 800 questions outside the "
                                "settings slice (200 of them chose the recipe: selected on)"}
    for name, record in found:
        base = name.split(".")[0]
        parts += [f"*{titles.get(base, name)}*", _stamp_line(name, record)]
        if base == "whole_environment":
            figures = record["figures"]
            rows = [_evaluation_row(label, figures[key]) for key, label in
                    (("sample_evaluation", "sample test.csv"), ("fsku_benchmark_evaluation", "FSKU benchmark slice"))
                    if key in figures]
            parts.append(table(["served answers on", "questions", "FSKU score", "MC accuracy", "descriptive score",
                                "fallbacks"], rows))
        else:
            parts.append(render_figures(name, record))
    return "\n\n".join(parts)


def block_of(text: str) -> str | None:
    """What README ``text`` holds between the results markers; None without them."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start + len(START):end].strip("\n")


def with_block(text: str, block: str) -> str:
    """``text`` with the results block replaced by ``block``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {START} ... {END} markers")
    return text[:start + len(START)] + "\n" + block + "\n" + text[end:]


def difference(readme: Path, folder: Path = RESULTS) -> str | None:
    """The unified diff between the README's results block and what the records give; "" when they
    agree, None when the README has no markers."""
    current = block_of(readme.read_text(encoding="utf-8"))
    if current is None:
        return None
    wanted = readme_block(folder)
    if current.strip() == wanted.strip():
        return ""
    return "".join(difflib.unified_diff((current.strip() + "\n").splitlines(keepends=True),
                                        (wanted.strip() + "\n").splitlines(keepends=True),
                                        f"{readme.name} (results block)", "from benchmarks/results"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check or rewrite the README's results block from the records.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", metavar="README", type=Path, help="exit 1 when the block differs from the records")
    action.add_argument("--write", metavar="README", type=Path, help="rewrite the block from the records")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the records folder (benchmarks/results)")
    args = parser.parse_args(argv)
    readme = args.check or args.write
    if args.write:
        text = readme.read_text(encoding="utf-8")
        try:
            readme.write_text(with_block(text, readme_block(args.results)), encoding="utf-8")
        except ValueError as error:
            print(f"{readme}: {error}", file=sys.stderr)
            return 2
        print(f"{readme}: results block written from {args.results}")
        return 0
    found = difference(readme, args.results)
    if found is None:
        print(f"{readme}: no {START} ... {END} markers, so no results block to check", file=sys.stderr)
        return 2
    if found:
        print(f"{readme}: the results block differs from the records; run "
              f"`python docs/tables.py --write {readme}`\n{found}", file=sys.stderr)
        return 1
    print(f"{readme}: the results block matches the records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
