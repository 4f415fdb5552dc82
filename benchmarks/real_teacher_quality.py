"""Quality of the real teacher (Qwen2.5-Coder-1.5B-Instruct, `--env qwen_coder_cpu`) on the FSKU
benchmark, measured through the project's own inference code (prompts, retrieval, choice scoring,
debiasing, the circuit breaker and the FSKU metric: the inference pipeline's node functions).

Parts (each prints a table and writes data/08_reporting/real_teacher/<part>.json; a killed part,
restarted, measures only the settings it had not finished):

    python benchmarks/real_teacher_quality.py slice        # closed book vs retrieval; option debiasing
    python benchmarks/real_teacher_quality.py slice --only "closed book + cyclic"   # one setting
    python benchmarks/real_teacher_quality.py pruning      # evenly spaced vs block influence, 24 and 20 layers
    python benchmarks/real_teacher_quality.py compression  # fp32 / bf16 vs GPTQ variants, nf4, int8, int8_dynamic
    python benchmarks/real_teacher_quality.py compression --only float32 "gptq g32"   # some variants

The slice is fixed: 200 multiple-choice and 20 descriptive questions chosen by a seeded hash
(inference.fsku_benchmark with mc_limit 200, descriptive_limit 20, seed 0). The headline run over
all 1108 items is `python benchmarks/fsku_benchmark_score.py --env qwen_coder_cpu ...` (docs/experiments/real_teacher_quality.md).
Targets (compression part): a 4-bit variant keeps >= 97 % of the fp32 MC accuracy with perplexity
within +3 %, and nf4 >= 95 %; the figures are recorded in
benchmarks/results/real_teacher_compression.<CPU kind>.json (native_bf16 or no_bf16).
Needs the environment's set-up (scripts/setup_qwen_coder_cpu.sh) and ../shared/fsku-benchmark; exits 2
without.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from report import (
    catalog_with_chunks,
    cpu_kind,
    cpu_line,
    derived_student,
    print_table,
    result_path,
    verdict,
    write_result,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = "qwen_coder_cpu"
OUT = ROOT / "data/08_reporting/real_teacher"
logger = logging.getLogger("benchmark.real_teacher")


class PassCounter:
    """Counts forward passes (calls) and the sequences they carried (batch rows)."""

    def __init__(self, model):
        self.calls = self.rows = 0
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.rows += int(ids.shape[0]) if ids is not None else 0

    def close(self):
        self._handle.remove()


def context():
    """The environment's catalog and the slice (questions, labels) of the FSKU benchmark."""
    from fsku_kedro.evaluation.fsku_benchmark import benchmark_set
    from fsku_kedro.parameters.inference import BenchmarkSliceSettings

    catalog = catalog_with_chunks(ENV)
    mc = catalog.load("fsku_benchmark_mc")
    if mc.empty:
        return None
    questions, labels = benchmark_set(mc, catalog.load("fsku_benchmark_mc_answers"),
                                      catalog.load("fsku_benchmark_descriptive"),
                                      BenchmarkSliceSettings(mc_limit=200, descriptive_limit=20, seed=0))
    return catalog, questions, labels


class Results(dict):
    """Each setting's result, written to ``<part>.partial.json`` as soon as it is measured, so a killed
    run restarted measures only the settings it had not finished. Without that file, the settings of
    the committed record ``record`` (benchmarks/results/) measured on this same CPU are taken over, so
    a fresh checkout goes on where the last one stopped."""

    def __init__(self, part: str, record: Path | None = None):
        self.path = OUT / f"{part}.partial.json"
        if self.path.is_file():
            super().__init__(json.loads(self.path.read_text(encoding="utf-8")))
        elif record is not None and record.is_file():
            committed = json.loads(record.read_text(encoding="utf-8"))
            super().__init__(committed["figures"] if committed.get("cpu") == cpu_line() else {})
        if self:
            logger.warning("Resuming %s: %s already measured", part, ", ".join(self))

    def __setitem__(self, name, value) -> None:
        super().__setitem__(name, value)
        OUT.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self, ensure_ascii=False, indent=2), encoding="utf-8")
        logger.warning("%s: %s", name, value)


def answer(model, questions, labels, passages, catalog, settings, embedder):
    """Answers and the FSKU report for ``questions`` with ``settings``, timed, passes counted."""
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.pipelines.inference.nodes import answer_test_questions, evaluate_answers

    counter = PassCounter(model.model)
    start, cpu_start = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        rows = answer_test_questions(questions, passages, model, catalog.load("prompt_templates"),
                                     ResponseStore(Path(tmp) / "progress.jsonl"), settings)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    counter.close()
    report, _, _ = evaluate_answers(rows, questions, labels, embedder)
    key = {label.ID: label.answer for label in labels}
    given = Counter(r.answer for r in rows if r.question_type == "multiple_choice")
    expected = Counter(key[r.ID] for r in rows if r.question_type == "multiple_choice")
    overall = report.iloc[0].to_dict()
    mc_rows = [r for r in rows if r.question_type == "multiple_choice"]
    # as the FSKU benchmark scores it: an answer the model did not give itself (a fallback) is wrong
    strict = sum(r.answer == key[r.ID] and not r.used_fallback for r in mc_rows) / len(mc_rows) if mc_rows else None
    return {
        "mc_accuracy_fallbacks_wrong": strict,
        "mc_accuracy": overall.get("mc_accuracy"), "descriptive_score": overall.get("descriptive_score"),
        "cosine_similarity": overall.get("cosine_similarity"), "keyword_recall": overall.get("keyword_recall"),
        "fsku_score": overall.get("fsku_score"), "seconds": seconds, "seconds_per_question": seconds / len(rows),
        "cpu_seconds_per_question": cpu_seconds / len(rows),  # all threads; unaffected by pauses of the process
        "forward_passes": counter.calls, "sequences": counter.rows, "fallbacks": sum(r.used_fallback for r in rows),
        "answered": {n: given[n] for n in sorted(given)}, "key": {n: expected[n] for n in sorted(expected)},
    }


def held_out_chunks(catalog) -> list[str]:
    """The compression benchmark's held-out corpus chunks (they do not depend on the prompt set)."""
    import pandas as pd

    from fsku_kedro.parameters.compression import CompressionSettings
    from fsku_kedro.pipelines.compression.nodes import build_calibration_set

    no_prompts = pd.DataFrame({"split": [], "prompt": []})
    return build_calibration_set(catalog.load("chunks"), no_prompts, catalog.load("prompt_templates"),
                                 CompressionSettings())["held_out"]


def _teacher_source(catalog):
    """The teacher's directory and name: materialised (and verified) once, then read from its cache."""
    teacher = catalog.load("teacher_model")
    return Path(teacher.path), teacher.name


def _teacher(catalog, dtype):
    from fsku_kedro.models.loading import load_bundle

    directory, name = _teacher_source(catalog)
    return load_bundle(directory, dtype, False, name)


def _plain(catalog):
    """The environment's inference settings, closed book, without debiasing: the pruning and
    compression parts compare weights, each judged by one pass per question."""
    from fsku_kedro.evaluation.benchmark_scores import served_settings

    return served_settings(catalog.load("params:inference"))


SLICE_SETTINGS = ["closed book", "retrieval", *(f"{base} + {method}" for base in ("closed book", "retrieval")
                                                 for method in ("pride", "cyclic")),
                  "closed book + generate first number"]  # the FSKU benchmark's own protocol, on request


def part_slice(catalog, questions, labels, only: list[str] | None = None) -> dict:
    """Closed book and retrieval, then the better of the two with each debiasing method; ``only``
    measures just the named settings."""
    from fsku_kedro.parameters.inference import DebiasSettings
    from fsku_kedro.pipelines.inference.nodes import retrieve_passages

    settings = catalog.load("params:inference")
    model = _teacher(catalog, settings.dtype)
    embedder = catalog.load("score_embedder")
    passages, _ = retrieve_passages(questions, catalog.load("chunks"), catalog.load("bm25_index"),
                                    catalog.load("faiss_index"), catalog.load("embedder"), catalog.load("reranker"),
                                    {}, catalog.load("params:retrieval"))
    mc = [q for q in questions if q.question_type == "multiple_choice"]
    results = Results("slice")

    def measure(name: str) -> None:
        base, _, method = name.partition(" + ")
        if method == "generate first number":  # generate, then the benchmark's reading of the number
            change = {"mc_method": "generate", "mc_extraction": "first_number", "debias": DebiasSettings()}
        else:
            change = {"debias": DebiasSettings(method=method or "none")}
        variant = settings.model_copy(update={"use_context": base == "retrieval", **change})
        results[name] = answer(model, mc if method else questions, labels, passages, catalog, variant, embedder)

    if only:
        for name in only:
            measure(name)
    else:
        for name in ("closed book", "retrieval"):
            if name not in results:
                measure(name)
        best = max(("closed book", "retrieval"), key=lambda n: results[n]["mc_accuracy"])
        for method in ("pride", "cyclic"):
            if f"{best} + {method}" not in results:
                measure(f"{best} + {method}")
    return {"model": model.name, "dtype": settings.dtype, "questions": len(questions), "settings": results}


def part_pruning(catalog, questions, labels) -> dict:
    settings = _plain(catalog)
    embedder = catalog.load("score_embedder")
    mc = [q for q in questions if q.question_type == "multiple_choice"]
    teacher_dir, _ = _teacher_source(catalog)
    results = Results("pruning")
    for selection in ("evenly_spaced", "block_influence"):
        for keep in (24, 20):
            if f"{selection} {keep}" in results:
                continue
            cache = ROOT / f"data/06_models/base/pruning_chunks/{selection}_{keep}"
            model = derived_student(catalog, teacher_dir, selection, keep, settings.dtype, cache)
            kept = json.loads((cache / "config.json").read_text())["num_hidden_layers"]
            results[f"{selection} {keep}"] = {"layers": kept, **answer(model, mc, labels, {}, catalog, settings,
                                                                      embedder)}
    return {"questions": len(mc), "settings": results}


# Each variant: a method and what it changes in the environment's compression settings. The reference
# (float32) and bfloat16 are measured beside them. Single changes from GPTQ at group size 128 first.
VARIANTS: dict[str, tuple[str, dict]] = {
    "gptq g128": ("gptq", {}),
    "gptq g64": ("gptq", {"gptq": {"group_size": 64}}),
    "gptq g32": ("gptq", {"gptq": {"group_size": 32}}),
    "gptq g128 act-order static": ("gptq", {"gptq": {"desc_act": True, "static_groups": True}}),
    "gptq g128 task calibration": ("gptq", {"calibration": {"prompt_share": 0.25, "mc_prompt_share": 0.5}}),
    "gptq g128 256 texts": ("gptq", {"calibration": {"calibration_samples": 256}}),
    "gptq g32 act-order static task": ("gptq", {
        "gptq": {"group_size": 32, "desc_act": True, "static_groups": True},
        "calibration": {"prompt_share": 0.25, "mc_prompt_share": 0.5}}),
    "gptq g32 act-order static task 256": ("gptq", {
        "gptq": {"group_size": 32, "desc_act": True, "static_groups": True},
        "calibration": {"calibration_samples": 256, "prompt_share": 0.25, "mc_prompt_share": 0.5}}),
    # AWQ computes in bfloat16 on CPU (its kernels have no float32 path): measured where auto is bf16.
    "awq g128": ("awq", {"awq": {"group_size": 128}}),
    "awq g64 task": ("awq", {"awq": {"group_size": 64},
                             "calibration": {"prompt_share": 0.25, "mc_prompt_share": 0.5}}),
    "nf4": ("nf4", {}),
    "int8": ("int8", {}),
    "int8_dynamic": ("int8_dynamic", {}),
}
COMPRESSION_SETTINGS = ["float32", *VARIANTS, "bfloat16"]


def _merged(base: dict, change: dict) -> dict:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _prompt_set(catalog):
    """The environment's prompt set without synthetic items (the sample questions' training half),
    decontaminated against the evaluation sets: what the calibration's training prompts come from."""
    import pandas as pd

    from fsku_kedro.pipelines.response_generation.nodes import build_prompt_set, decontaminate

    candidates, split = build_prompt_set(pd.DataFrame(), catalog.load("sample_questions"),
                                         catalog.load("user_instructions"), catalog.load("prompt_templates"),
                                         catalog.load("params:response_generation.prompt_set"))
    clean, _, _ = decontaminate(candidates, catalog.load("sample_questions"), split, catalog.load("test_questions"),
                                catalog.load("fsku_benchmark_mc"), catalog.load("fsku_benchmark_descriptive"),
                                catalog.load("params:response_generation.decontamination"))
    return clean


def part_compression(catalog, questions, labels, only: list[str] | None = None) -> dict:
    """fp32 (the reference), each variant, then bf16: MC accuracy, perplexity, answer shares, time, size."""
    from transformers import AutoConfig

    from fsku_kedro.compression.calibration import calibration_texts
    from fsku_kedro.compression.methods import check_configuration, quantize
    from fsku_kedro.models.bundle import ModelBundle
    from fsku_kedro.models.compute_dtype import auto_dtype
    from fsku_kedro.models.loading import load_bundle, save_bundle
    from fsku_kedro.models.sources import load_tokenizer
    from fsku_kedro.parameters.compression import CompressionSettings
    from fsku_kedro.pipelines.compression.nodes import build_calibration_set, perplexity

    settings = _plain(catalog)
    base = catalog.load("params:compression").model_dump()
    embedder = catalog.load("score_embedder")
    mc = [q for q in questions if q.question_type == "multiple_choice"]
    teacher_dir, _ = _teacher_source(catalog)
    tokenizer = load_tokenizer(str(teacher_dir))
    chunks, prompts, templates = catalog.load("chunks"), _prompt_set(catalog), catalog.load("prompt_templates")
    results = Results(f"compression.{cpu_kind()}", result_path("real_teacher_compression", by_cpu_kind=True))
    held_out = build_calibration_set(chunks, prompts, templates, CompressionSettings())["held_out"]

    def measure(name: str, model, **extra) -> None:
        results[name] = {**extra, "perplexity": perplexity(model, held_out, 256),
                         **answer(model, mc, labels, {}, catalog, settings, embedder)}
        record_compression(results, len(mc))  # committed as it grows

    def size_mb(directory: Path) -> float:
        return sum(p.stat().st_size for p in directory.glob("*.safetensors")) / 1e6

    # bfloat16 only where the CPU runs it natively (elsewhere it takes hours); --only asks for it anyway.
    default = [n for n in COMPRESSION_SETTINGS if n != "bfloat16" or auto_dtype().dtype == "bfloat16"]
    for name in only or default:
        if name in results:
            continue
        if name in ("float32", "bfloat16"):
            measure(name, load_bundle(teacher_dir, name, False), quantize_s=0.0, size_mb=size_mb(teacher_dir)
                    * (0.5 if name == "bfloat16" else 1.0), dtype=name)
            continue
        method, change = VARIANTS[name]
        compression = CompressionSettings.model_validate(_merged(base, {**change, "methods": [method],
                                                                        "serve_method": method}))
        check_configuration(compression, AutoConfig.from_pretrained(teacher_dir), cuda=False)
        calibration = build_calibration_set(chunks, prompts, templates, compression)
        texts = calibration_texts(calibration, tokenizer)
        start, cpu_start = time.perf_counter(), time.process_time()
        with tempfile.TemporaryDirectory() as work:
            quantized = quantize(method, str(teacher_dir), tokenizer, texts, compression, Path(work))
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            bundle = ModelBundle(quantized, tokenizer, f"teacher-{name}")
            saved = Path(work) / "saved"
            saved.mkdir()
            save_bundle(saved, bundle)
            measure(name, bundle, quantize_s=seconds, quantize_cpu_s=cpu_seconds, size_mb=size_mb(saved),
                    method=method, dtype=auto_dtype().dtype if compression.dtype == "auto" else compression.dtype,
                    calibration={"chunks": len(calibration["calibration"]), "prompts": len(calibration["prompts"])},
                    settings=change)
    return {"questions": len(mc), "settings": dict(results)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["slice", "pruning", "compression"])
    parser.add_argument("--only", nargs="+", choices=SLICE_SETTINGS + COMPRESSION_SETTINGS,
                        help="slice or compression: measure just these settings")
    args = parser.parse_args()
    allowed = {"slice": SLICE_SETTINGS, "compression": COMPRESSION_SETTINGS}.get(args.part, [])
    if args.only and not set(args.only) <= set(allowed):
        parser.error(f"--only for {args.part} takes {allowed}")
    logging.basicConfig(level=logging.WARNING)
    loaded = context()
    if loaded is None:
        print("FSKU benchmark files not found; nothing to measure")
        return 2
    catalog, questions, labels = loaded
    if args.part == "slice":
        result = part_slice(catalog, questions, labels, args.only)
    elif args.part == "compression":
        result = part_compression(catalog, questions, labels, args.only)
    else:
        result = part_pruning(catalog, questions, labels)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.part}.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    if args.part == "slice":
        write_result("real_teacher_slice", result["settings"], by_cpu_kind=True, questions=result["questions"],
                     models={"teacher": result["model"]}, dtype=result["dtype"],
                     evaluation="the FSKU settings slice (200 MC + 20 descriptive, seed 0)")
    if args.part == "compression":
        return report_compression(result)
    columns = ["mc_accuracy", "descriptive_score", "fsku_score", "seconds_per_question", "forward_passes",
               "fallbacks"]
    extra = {"pruning": ["layers"]}.get(args.part, [])
    print(f"\n{args.part}: {result['questions']} questions, Qwen2.5-Coder-1.5B-Instruct, CPU\n")
    print_table(["setting", *extra, *columns, "answered 1/2/3/4 (key)"], [
        [name, *(f"{r[c]:.3f}" if isinstance(r.get(c), float) else r.get(c) for c in extra + columns),
         " ".join(f"{r['answered'].get(n, 0)}({r['key'].get(n, 0)})" for n in sorted(r["key"]))]
        for name, r in result["settings"].items()
    ])
    return 0


def record_compression(settings: dict, questions: int) -> Path:
    # One record per CPU kind: their dtypes, speeds and therefore figures differ.
    return write_result("real_teacher_compression", dict(settings), by_cpu_kind=True, questions=questions,
                        models={"teacher": "Qwen2.5-Coder-1.5B-Instruct"},
                        evaluation="200 MC of the FSKU settings slice (seed 0), closed book, one pass, no "
                        "debiasing; perplexity on 32 held-out corpus chunks")


def report_compression(result: dict) -> int:
    """The table against float32, the committed record, and the targets: a 4-bit variant at >= 97 % of
    fp32 MC accuracy with perplexity within +3 %, and nf4 at >= 95 %."""
    settings = result["settings"]
    if "float32" not in settings:
        print("float32, the reference, is not measured yet")
        return 2
    base = settings["float32"]
    rows = []
    for name, r in settings.items():
        share, ppl = r["mc_accuracy"] / base["mc_accuracy"], r["perplexity"] / base["perplexity"] - 1
        rows.append([name, f"{r['mc_accuracy']:.3f}", f"{share:.1%}", f"{r['perplexity']:.2f} ({ppl:+.1%})",
                     f"{r.get('quantize_cpu_s', r['quantize_s']):.0f}", f"{r['size_mb']:.0f}",
                     f"{r['cpu_seconds_per_question']:.2f}",
                     " / ".join(str(r["answered"].get(n, 0)) for n in sorted(r["key"]))])
    key = " / ".join(str(base["key"][n]) for n in sorted(base["key"]))
    print(f"\ncompression: {result['questions']} MC questions, Qwen2.5-Coder-1.5B-Instruct, one pass, closed book\n")
    # CPU seconds (every thread of the process): wall time counts pauses and other jobs on the cores.
    print_table(["variant", "MC accuracy", "share of fp32", "perplexity", "quantize CPU s", "MB",
                 "CPU s / question", f"answered 1/2/3/4 (key {key})"], rows)
    path = record_compression(settings, result["questions"])
    print(f"\nrecorded in {path.relative_to(ROOT)}")
    four_bit = {n: r for n, r in settings.items() if n.startswith(("gptq", "awq")) or n == "nf4"}
    best = max(four_bit, key=lambda n: (four_bit[n]["mc_accuracy"], -four_bit[n]["perplexity"]), default=None)
    checks = []
    if best is not None:
        r = four_bit[best]
        checks.append((r["mc_accuracy"] >= 0.97 * base["mc_accuracy"] and r["perplexity"] <= 1.03 * base["perplexity"],
                       f"a 4-bit variant ({best}, the best) keeps >= 97 % of fp32 MC accuracy, perplexity within +3 %"))
    if "nf4" in settings:
        checks.append((settings["nf4"]["mc_accuracy"] >= 0.95 * base["mc_accuracy"], "nf4 keeps >= 95 % of fp32 MC"))
    return max([verdict(met, text) for met, text in checks] or [0])


if __name__ == "__main__":
    sys.exit(main())
