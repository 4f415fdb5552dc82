"""Quality of the real teacher (Qwen2.5-Coder-1.5B-Instruct, `--env qwen_coder_cpu`) on the FSKU
benchmark, measured through the project's own inference code (prompts, retrieval, choice scoring,
debiasing, the circuit breaker and the FSKU metric: the inference pipeline's node functions).

Parts (each prints a table and writes data/08_reporting/real_teacher/<part>.json; a killed part,
restarted, measures only the settings it had not finished):

    python benchmarks/real_teacher_quality.py slice        # closed book vs retrieval; option debiasing
    python benchmarks/real_teacher_quality.py slice --only "closed book + cyclic"   # one setting
    python benchmarks/real_teacher_quality.py pruning      # evenly spaced vs block influence, 24 and 20 layers
    python benchmarks/real_teacher_quality.py compression  # fp32 / bf16 vs gptq, nf4, int8, int8_dynamic

The slice is fixed: 200 multiple-choice and 20 descriptive questions chosen by a seeded hash
(inference.fsku_benchmark with mc_limit 200, descriptive_limit 20, seed 0). The headline run over
all 1108 items is `python benchmarks/fsku_benchmark_score.py --env qwen_coder_cpu ...` (see README).
Targets: gptq keeps >= 97 % of the fp32 MC accuracy, nf4 >= 95 % (compression part). Needs the
environment's set-up (scripts/setup_qwen_coder_cpu.sh) and ../shared/fsku-benchmark; exits 2 without.
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

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from report import print_table, verdict

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

    bootstrap_project(ROOT)
    session = KedroSession.create(project_path=ROOT, env=ENV)
    catalog = session.load_context().catalog
    if not catalog.exists("chunks"):
        from kedro.framework.project import pipelines

        session.run(pipeline_names=["knowledge_base"])
        pipelines.set_requested(None)  # the next context types every pipeline's parameters again
        session = KedroSession.create(project_path=ROOT, env=ENV)
        catalog = session.load_context().catalog
    mc = catalog.load("fsku_benchmark_mc")
    if mc.empty:
        return None
    questions, labels = benchmark_set(mc, catalog.load("fsku_benchmark_mc_answers"),
                                      catalog.load("fsku_benchmark_descriptive"),
                                      BenchmarkSliceSettings(mc_limit=200, descriptive_limit=20, seed=0))
    return catalog, questions, labels


class Results(dict):
    """Each setting's result, written to ``<part>.partial.json`` as soon as it is measured, so a killed
    run restarted measures only the settings it had not finished."""

    def __init__(self, part: str):
        self.path = OUT / f"{part}.partial.json"
        super().__init__(json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {})
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
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = answer_test_questions(questions, passages, model, catalog.load("prompt_templates"),
                                     ResponseStore(Path(tmp) / "progress.jsonl"), settings)
    seconds = time.perf_counter() - start
    counter.close()
    report, _, _ = evaluate_answers(rows, questions, labels, embedder)
    key = {label.ID: label.answer for label in labels}
    given = Counter(r.answer for r in rows if r.question_type == "multiple_choice")
    expected = Counter(key[r.ID] for r in rows if r.question_type == "multiple_choice")
    overall = report.iloc[0].to_dict()
    return {
        "mc_accuracy": overall.get("mc_accuracy"), "descriptive_score": overall.get("descriptive_score"),
        "cosine_similarity": overall.get("cosine_similarity"), "keyword_recall": overall.get("keyword_recall"),
        "fsku_score": overall.get("fsku_score"), "seconds": seconds, "seconds_per_question": seconds / len(rows),
        "forward_passes": counter.calls, "sequences": counter.rows, "fallbacks": sum(r.used_fallback for r in rows),
        "answered": {n: given[n] for n in sorted(given)}, "key": {n: expected[n] for n in sorted(expected)},
    }


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
    from fsku_kedro.parameters.inference import DebiasSettings

    return catalog.load("params:inference").model_copy(
        update={"use_context": False, "debias": DebiasSettings(method="none")})


SLICE_SETTINGS = ["closed book", "retrieval", *(f"{base} + {method}" for base in ("closed book", "retrieval")
                                                 for method in ("pride", "cyclic"))]


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
        variant = settings.model_copy(update={"use_context": base == "retrieval",
                                              "debias": DebiasSettings(method=method or "none")})
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
    from fsku_kedro.models.loading import load_bundle, materialise_pretrained

    settings = _plain(catalog)
    embedder = catalog.load("score_embedder")
    mc = [q for q in questions if q.question_type == "multiple_choice"]
    teacher_dir, _ = _teacher_source(catalog)
    results = Results("pruning")
    for selection in ("evenly_spaced", "block_influence"):
        for keep in (24, 20):
            if f"{selection} {keep}" in results:
                continue
            cache = ROOT / f"data/06_models/base/pruning/{selection}_{keep}"
            materialise_pretrained(str(teacher_dir), f"qwen-coder-{selection}-{keep}", cache, keep, "float32", False,
                                   selection, str(ROOT / "data/01_raw/corpus"))
            model = load_bundle(cache, settings.dtype, False)
            kept = json.loads((cache / "config.json").read_text())["num_hidden_layers"]
            results[f"{selection} {keep}"] = {"layers": kept, **answer(model, mc, labels, {}, catalog, settings,
                                                                      embedder)}
    return {"questions": len(mc), "settings": results}


METHODS = ("nf4", "gptq", "int8_dynamic", "int8")  # the two with targets first, the quick one first


def part_compression(catalog, questions, labels) -> dict:
    """fp32 (the reference), each quantization method, then bf16."""
    import pandas as pd
    from transformers import AutoConfig

    from fsku_kedro.compression.methods import check_configuration, quantize
    from fsku_kedro.models.bundle import ModelBundle
    from fsku_kedro.models.loading import load_bundle
    from fsku_kedro.models.sources import load_tokenizer
    from fsku_kedro.pipelines.compression.nodes import build_calibration_set, perplexity

    settings = _plain(catalog)
    compression = catalog.load("params:compression").model_copy(update={"methods": list(METHODS)})
    embedder = catalog.load("score_embedder")
    mc = [q for q in questions if q.question_type == "multiple_choice"]
    teacher_dir, _ = _teacher_source(catalog)
    texts = build_calibration_set(catalog.load("chunks"), pd.DataFrame(columns=["prompt", "split"]), compression)
    check_configuration(compression, AutoConfig.from_pretrained(teacher_dir), cuda=False)
    tokenizer = load_tokenizer(str(teacher_dir))
    results = Results("compression")

    def measure(name: str, model, quantize_s: float = 0.0) -> None:
        results[name] = {"quantize_s": quantize_s, "perplexity": perplexity(model, texts["held_out"], 256),
                         **answer(model, mc, labels, {}, catalog, settings, embedder)}

    if "float32" not in results:
        measure("float32", load_bundle(teacher_dir, "float32", False))
    for method in (m for m in METHODS if m not in results):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            quantized = quantize(method, str(teacher_dir), tokenizer, texts["calibration"], compression, Path(work))
            measure(method, ModelBundle(quantized, tokenizer, f"teacher-{method}"), time.perf_counter() - start)
    if "bfloat16" not in results:
        measure("bfloat16", load_bundle(teacher_dir, "bfloat16", False))
    return {"questions": len(mc), "calibration_texts": len(texts["calibration"]),
            "held_out_chunks": len(texts["held_out"]), "settings": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["slice", "pruning", "compression"])
    parser.add_argument("--only", nargs="+", choices=SLICE_SETTINGS, help="slice: measure just these settings")
    args = parser.parse_args()
    if args.only and args.part != "slice":
        parser.error("--only applies to the slice part")
    logging.basicConfig(level=logging.WARNING)
    loaded = context()
    if loaded is None:
        print("FSKU benchmark files not found; nothing to measure")
        return 2
    catalog, questions, labels = loaded
    if args.part == "slice":
        result = part_slice(catalog, questions, labels, args.only)
    else:
        result = {"pruning": part_pruning, "compression": part_compression}[args.part](catalog, questions, labels)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.part}.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    columns = ["mc_accuracy", "descriptive_score", "fsku_score", "seconds_per_question", "forward_passes",
               "fallbacks"]
    extra = {"pruning": ["layers"], "compression": ["perplexity", "quantize_s"]}.get(args.part, [])
    print(f"\n{args.part}: {result['questions']} questions, Qwen2.5-Coder-1.5B-Instruct, CPU\n")
    print_table(["setting", *extra, *columns, "answered 1/2/3/4 (key)"], [
        [name, *(f"{r[c]:.3f}" if isinstance(r.get(c), float) else r.get(c) for c in extra + columns),
         " ".join(f"{r['answered'].get(n, 0)}({r['key'].get(n, 0)})" for n in sorted(r["key"]))]
        for name, r in result["settings"].items()
    ])
    if args.part != "compression":
        return 0
    base = result["settings"]["float32"]["mc_accuracy"]
    checks = [(result["settings"][m]["mc_accuracy"] >= share * base, f"{m} keeps >= {share:.0%} of fp32 MC accuracy")
              for m, share in (("gptq", 0.97), ("nf4", 0.95)) if m in result["settings"]]
    return max([verdict(met, text) for met, text in checks] or [0])


if __name__ == "__main__":
    sys.exit(main())
