"""The gpu environment's figures at real model shapes, without downloading weights.

    python benchmarks/gpu_scale.py [--out data/08_reporting/gpu_scale.json]   # one CUDA GPU, about 5 minutes
    python benchmarks/gpu_scale.py --reduced                                  # CPU plumbing check, 2 layers
    python benchmarks/gpu_scale.py --measure-prompts                          # CPU, once: prompt lengths

Models are Qwen2.5-7B-Instruct (teacher) and Qwen2.5-1.5B-Instruct (student) built from the configs
in ``benchmarks/architecture_configs`` (``architectures.py``) with random bf16 weights: speed and memory do not
depend on the weights' values. Everything runs through the project's own code: the chunked
DistiLLM-2 loss and its head reads (``fsku_kedro.distillation``), choice scoring
(``fsku_kedro.answering.choice_scoring``) and the transformers generation backend with its static
cache. Only torch, transformers and peft are needed (bitsandbytes where present); pydantic, trl
and Kedro are not imported, so the script runs from a source tree (``src`` is put on the path).

a. One DistiLLM-2 training step: teacher frozen, student LoRA r=64 on every projection with
   gradient checkpointing, 4 pairs (8 rows) of 1,024 tokens (256 prompt, 768 response), AdamW.
   Peak GPU memory and step time for the chunked loss and for the full-vocabulary reference;
   a QLoRA (NF4) student as well when bitsandbytes is installed.
b. Choice scoring of 515 multiple-choice questions (the competition's test set) by the student
   at the measured prompt lengths of the pipeline's MC prompts (benchmarks/gpu_scale_prompts.json,
   written by --measure-prompts with the Qwen2.5 tokenizer), in bf16 and, with bitsandbytes, int8
   and NF4. The 4-bit GPTQ student needs GPTQModel's kernels and is not measured here.
c. Descriptive generation: 15 questions at the measured descriptive prompt length, 256 new
   tokens each (the end-of-sequence rows of the random head are zeroed so no answer stops early).

Targets (full sizes only): 515 MC questions in <= 20 minutes in bf16; the chunked loss peaks
lower than the full-vocabulary reference. --reduced judges nothing: it proves the code paths.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
try:
    import fsku_kedro  # noqa: F401
except ImportError:  # a source tree without the installed package (the GPU machine)
    sys.path.insert(0, str(ROOT / "src"))

import torch
from architectures import (
    QWEN_TOKENIZER_SIZE,
    load_config,
    random_model,
    shrunken,
    stand_in_tokenizer,
    stand_in_word,
)
from report import print_table, verdict

PROMPTS_FILE = ROOT / "benchmarks" / "gpu_scale_prompts.json"
TEACHER, STUDENT = "qwen2.5-7b-instruct", "qwen2.5-1.5b-instruct"
COMPETITION_MC, COMPETITION_DESCRIPTIVE = 515, 15
FULL = {"pairs": 4, "tokens": 1024, "prompt": 256, "lora_r": 64, "steps": 3, "mc": COMPETITION_MC,
        "mc_batch": 16, "descriptive": COMPETITION_DESCRIPTIVE, "new_tokens": 256, "chunk": 1024}
REDUCED = {"pairs": 1, "tokens": 96, "prompt": 32, "lora_r": 8, "steps": 1, "mc": 24, "mc_batch": 8,
           "descriptive": 3, "new_tokens": 8, "chunk": 128}
# DistiLLM-2's released loss settings: DistillMSettings' defaults, written out because this script runs
# without pydantic (tests/distillation/test_real_shapes.py checks that they agree).
DISTILLM_V2 = {"loss_type": "distillm_v2", "alpha_teacher": 0.1, "alpha_student": 0.1, "beta": 1.0, "jsd_lambda": 0.5}


class Meter:
    """Peak memory above a baseline and wall time: CUDA's allocator on a GPU; on CPU the resident set,
    sampled every 2 ms within the window (the process's maximum resident set only grows, so it cannot
    tell one window's peak from an earlier one's)."""

    def __init__(self, device: str):
        self.device = device

    @staticmethod
    def _resident_bytes() -> int:
        import os

        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._cpu_peak = max(self._cpu_peak, self._resident_bytes())

    def __enter__(self):
        gc.collect()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            import threading

            self.base = self._cpu_peak = self._resident_bytes()
            self._stop = threading.Event()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._sampler.join()
            self.peak = max(self._cpu_peak, self._resident_bytes())
        self.seconds = time.perf_counter() - self.start
        self.peak_gib = self.peak / 2**30
        self.above_gib = (self.peak - self.base) / 2**30
        return False


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None (not measured) when either is missing or not positive."""
    if numerator is None or denominator is None or numerator <= 0 or denominator <= 0:
        return None
    return numerator / denominator


def models(device: str, reduced: bool):
    """(teacher config, student config) at full size, or shrunken to two layers (same vocabularies)."""
    teacher, student = load_config(TEACHER), load_config(STUDENT)
    if reduced:
        teacher = shrunken(teacher, layers=2, hidden=192, intermediate=384, heads=6, kv_heads=2)
        student = shrunken(student, layers=2, hidden=128, intermediate=256, heads=4, kv_heads=2)
    return teacher, student


def random_ids(rows: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, 150_000, (rows, length), generator=g)


def lora_student(config, device: str, r: int, quantized_dir: Path | None = None):
    from peft import LoraConfig, get_peft_model

    if quantized_dir is None:
        student = random_model(config, "bfloat16", device, seed=2)
    else:
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16)
        student = AutoModelForCausalLM.from_pretrained(quantized_dir, quantization_config=nf4, dtype=torch.bfloat16,
                                                       device_map={"": device})
        student = prepare_model_for_kbit_training(student)
    student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    student.enable_input_require_grads()
    projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    student = get_peft_model(student, LoraConfig(r=r, lora_alpha=2 * r, target_modules=projections,
                                                 task_type="CAUSAL_LM"))
    student.train()
    return student


def distillation_step(student, teacher, batch, variant: str, chunk: int, optimizer) -> float:
    """One optimizer step of DistiLLM-2 on ``batch``; returns the loss."""
    from fsku_kedro.distillation.heads import final_hidden_states, head_weight
    from fsku_kedro.distillation.losses import distillation_loss, reference_distillation_loss

    ids, attention, mask = batch
    optimizer.zero_grad(set_to_none=True)
    student_hidden = final_hidden_states(student, ids, attention)[:, :-1]
    with torch.no_grad():
        teacher_hidden = final_hidden_states(teacher, ids, attention)[:, :-1]
    labels, response = ids[:, 1:], mask[:, 1:]
    with head_weight(student) as student_head, head_weight(teacher) as teacher_head:
        if variant == "chunked":
            loss = distillation_loss(student_hidden, student_head, teacher_hidden, teacher_head, labels, response,
                                     vocab_size=QWEN_TOKENIZER_SIZE, chunk_size=chunk, **DISTILLM_V2).loss
        else:
            with torch.no_grad():
                teacher_logits = teacher_hidden @ teacher_head.T
            loss = reference_distillation_loss(student_hidden @ student_head.T, teacher_logits, labels, response,
                                               vocab_size=QWEN_TOKENIZER_SIZE, **DISTILLM_V2)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def part_distillation(device: str, sizes: dict, reduced: bool, work: Path) -> dict:
    teacher_config, student_config = models(device, reduced)
    teacher = random_model(teacher_config, "bfloat16", device, seed=1).requires_grad_(False)
    rows, length = 2 * sizes["pairs"], sizes["tokens"]
    ids = random_ids(rows, length, seed=3).to(device)
    attention = torch.ones_like(ids)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, sizes["prompt"]:] = True
    results = {}
    variants = [("bf16 LoRA", "chunked"), ("bf16 LoRA", "full_vocabulary")]
    if device == "cuda" and _has("bitsandbytes"):
        variants.append(("QLoRA (NF4)", "chunked"))
    for student_kind, variant in variants:
        quantized_dir = None
        if student_kind.startswith("QLoRA"):
            quantized_dir = work / "student"
            if not quantized_dir.exists():
                random_model(student_config, "bfloat16", "cpu", seed=2).save_pretrained(quantized_dir)
        student = lora_student(student_config, device, sizes["lora_r"], quantized_dir)
        optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
        name = f"{student_kind}, {variant}"
        try:
            distillation_step(student, teacher, (ids, attention, mask), variant, sizes["chunk"], optimizer)  # warm-up
            with Meter(device) as meter:
                losses = [distillation_step(student, teacher, (ids, attention, mask), variant, sizes["chunk"],
                                            optimizer) for _ in range(sizes["steps"])]
            results[name] = {"peak_gib": meter.peak_gib, "above_weights_gib": meter.above_gib,
                             "step_s": meter.seconds / sizes["steps"], "loss": losses[-1],
                             "tokens_per_s": rows * length * sizes["steps"] / meter.seconds}
        except torch.cuda.OutOfMemoryError as error:
            results[name] = {"error": f"out of memory: {str(error).splitlines()[0]}"}
        del student, optimizer
        _free(device)
    del teacher
    _free(device)
    chunked, full = results.get("bf16 LoRA, chunked", {}), results.get("bf16 LoRA, full_vocabulary", {})
    if "peak_gib" in chunked and "peak_gib" in full:
        results["full / chunked"] = {key: ratio(full[key], chunked[key])
                                     for key in ("peak_gib", "above_weights_gib", "step_s", "tokens_per_s")}
    return results


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def prompt_lengths(reduced: bool) -> dict:
    """Measured MC and descriptive prompt lengths in Qwen2.5 tokens (or small ones for --reduced)."""
    if reduced:
        return {"multiple_choice": [40, 56, 72], "descriptive": [60, 80], "source": "reduced sizes"}
    if not PROMPTS_FILE.is_file():
        raise SystemExit(f"{PROMPTS_FILE} is missing: run `python benchmarks/gpu_scale.py --measure-prompts` once")
    return json.loads(PROMPTS_FILE.read_text(encoding="utf-8"))


def chats_of_lengths(tokenizer, lengths: list[int], count: int, seed: int) -> list[list[dict[str, str]]]:
    """``count`` single-turn chats whose rendered prompts have the given token lengths, cycled."""
    overhead = len(tokenizer.apply_chat_template([{"role": "user", "content": ""}], add_generation_prompt=True,
                                                 return_dict=True)["input_ids"])
    g = torch.Generator().manual_seed(seed)
    chats = []
    for i in range(count):
        words = max(1, lengths[i % len(lengths)] - overhead)
        chats.append([{"role": "user", "content": " ".join(
            stand_in_word(int(t)) for t in torch.randint(100, 150_000, (words,), generator=g))}])
    return chats


def student_variants(device: str, student_config, work: Path) -> list[tuple[str, object]]:
    """(name, model) of the student in bf16 and, where bitsandbytes runs, int8 and NF4."""
    base = random_model(student_config, "bfloat16", device, seed=2)
    with torch.no_grad():  # the random head never chooses end-of-sequence: every answer runs to its limit
        base.get_output_embeddings().weight[151_643:] = 0
    variants = [("bf16", base)]
    if device == "cuda" and _has("bitsandbytes"):
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        saved = work / "student_serving"
        if not saved.exists():
            base.save_pretrained(saved)
        for name, config in (("int8 (bitsandbytes)", BitsAndBytesConfig(load_in_8bit=True)),
                             ("nf4 (bitsandbytes)", BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                                       bnb_4bit_compute_dtype=torch.bfloat16))):
            variants.append((name, lambda config=config: AutoModelForCausalLM.from_pretrained(
                saved, quantization_config=config, device_map={"": device})))
    return variants


def part_inference(device: str, sizes: dict, reduced: bool, work: Path) -> dict:
    from fsku_kedro.answering.choice_scoring import score_choices
    from fsku_kedro.generation.backends import TransformersBackend
    from fsku_kedro.models.bundle import ModelBundle

    _, student_config = models(device, reduced)
    tokenizer = stand_in_tokenizer()
    lengths = prompt_lengths(reduced)
    mc_chats = chats_of_lengths(tokenizer, lengths["multiple_choice"], sizes["mc"], seed=4)
    descriptive = chats_of_lengths(tokenizer, lengths["descriptive"], sizes["descriptive"], seed=5)
    greedy = SimpleNamespace(max_new_tokens=sizes["new_tokens"], do_sample=False, temperature=1.0, top_p=1.0, seed=0)
    results = {"multiple_choice": {}, "descriptive": {}}
    for name, model in student_variants(device, student_config, work):
        model = model if isinstance(model, torch.nn.Module) else model()  # a loader for the quantized ones
        bundle = ModelBundle(model.eval(), tokenizer, f"{STUDENT} {name}")
        score_choices(bundle, mc_chats[: sizes["mc_batch"]], [4] * sizes["mc_batch"], sizes["mc_batch"])  # warm-up
        with Meter(device) as meter:
            score_choices(bundle, mc_chats, [4] * len(mc_chats), batch_size=sizes["mc_batch"])
        results["multiple_choice"][name] = {
            "questions": len(mc_chats), "seconds": meter.seconds, "questions_per_s": len(mc_chats) / meter.seconds,
            "minutes_for_515": COMPETITION_MC / (len(mc_chats) / meter.seconds) / 60, "peak_gib": meter.peak_gib}
        if name == "bf16":
            backend = TransformersBackend(bundle, batch_size=len(descriptive), show_progress=False,
                                          cache_implementation="static")
            backend.generate(descriptive[:2], SimpleNamespace(**{**vars(greedy), "max_new_tokens": 4}))  # warm-up
            with Meter(device) as meter:
                completions = backend.generate(descriptive, greedy)
            tokens = sum(c.completion_tokens for c in completions)
            results["descriptive"][name] = {
                "questions": len(descriptive), "batch": len(descriptive), "new_tokens": tokens,
                "seconds": meter.seconds, "tokens_per_s": tokens / meter.seconds,
                "minutes_for_15_at_256": COMPETITION_DESCRIPTIVE * 256 / (tokens / meter.seconds) / 60}
        del bundle, model
        _free(device)
    return results


def measure_prompts() -> int:
    """Writes the Qwen2.5-token lengths of the inference pipeline's prompts on the sample set, with the
    gpu environment's inference settings (2,000 context characters, 5 passages)."""
    from kedro.config import OmegaConfigLoader
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from fsku_kedro.answering.prompts import PreparedQuestion, build_chat
    from fsku_kedro.models.sources import load_tokenizer
    from fsku_kedro.parameters.inference import InferenceSettings
    from fsku_kedro.parameters.retrieval import RetrievalSettings
    from fsku_kedro.pipelines.inference.nodes import retrieve_passages
    from fsku_kedro.prompt_templates import read_templates

    qwen = ROOT / "data/06_models/base/qwen_coder_teacher"  # Qwen2.5's tokenizer (scripts/setup_qwen_coder_cpu.sh)
    if not (qwen / "tokenizer.json").is_file():
        print(f"{qwen} has no tokenizer: run scripts/setup_qwen_coder_cpu.sh first")
        return 2
    gpu = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="gpu")["parameters"]
    inference = InferenceSettings.model_validate(gpu["inference"])
    retrieval = RetrievalSettings.model_validate(gpu["retrieval"])
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT) as session:
        catalog = session.load_context().catalog
        questions = catalog.load("test_questions")
        passages, _ = retrieve_passages(questions, catalog.load("chunks"), catalog.load("bm25_index"),
                                        catalog.load("faiss_index"), catalog.load("embedder"),
                                        catalog.load("reranker"), {}, retrieval)
        templates = read_templates(catalog.load("prompt_templates"))
    tokenizer = load_tokenizer(str(qwen))
    lengths: dict[str, list[int]] = {"multiple_choice": [], "descriptive": []}
    for q in questions:
        item = PreparedQuestion(q, passages[q.ID])
        chat = build_chat(item, templates, inference)
        lengths[q.question_type].append(len(tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_dict=True)["input_ids"]))
    result = {**lengths, "source": (
        "sample set (data/01_raw/sample/test.csv), prompts built by the inference pipeline's build_chat with "
        f"conf/gpu's inference and retrieval settings (max_context_chars {inference.max_context_chars}, "
        f"k {retrieval.k}) over the default knowledge base, counted with Qwen2.5's tokenizer "
        "(from Qwen2.5-Coder-1.5B-Instruct: the same vocabulary and chat template markers)")}
    lines = [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}" for key, value in result.items()]
    PROMPTS_FILE.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    for kind in ("multiple_choice", "descriptive"):
        values = lengths[kind]
        print(f"{kind}: {len(values)} prompts, mean {sum(values) / len(values):.0f} tokens, max {max(values)}")
    print(f"written to {PROMPTS_FILE.relative_to(ROOT)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduced", action="store_true", help="two shrunken layers, small batches: a plumbing check")
    parser.add_argument("--measure-prompts", action="store_true", help="write benchmarks/gpu_scale_prompts.json")
    parser.add_argument("--out", type=Path, default=ROOT / "data/08_reporting/gpu_scale.json")
    parser.add_argument("--skip", choices=["distillation", "inference"], action="append", default=[])
    args = parser.parse_args()
    if args.measure_prompts:
        return measure_prompts()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.reduced:
        print("no CUDA GPU: full sizes need one (use --reduced for the CPU plumbing check)")
        return 2
    sizes = REDUCED if args.reduced else FULL
    result = {"kind": "plumbing check (shrunken layers, real vocabulary)" if args.reduced
              else "real model shapes, random weights",
              "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "cuda": torch.version.cuda, "bitsandbytes": _has("bitsandbytes"),
              "sizes": sizes}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if "distillation" not in args.skip:
            result["distillation_step"] = part_distillation(device, sizes, args.reduced, Path(tmp))
        if "inference" not in args.skip:
            result["inference"] = part_inference(device, sizes, args.reduced, Path(tmp))
    result["seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"\n{result['kind']} on {result['device']} (torch {result['torch']}), {result['seconds']:.0f} s\n")
    if "distillation_step" in result:
        shapes = "two-layer shrunken" if args.reduced else "full"
        print(f"a. DistiLLM-2 step ({shapes} shapes): 7B teacher bf16 frozen, 1.5B student LoRA r={sizes['lora_r']} "
              f"with gradient checkpointing, {2 * sizes['pairs']} rows x {sizes['tokens']} tokens"
              + ("; CPU memory is the resident set, sampled every 2 ms" if device == "cpu" else "") + "\n")
        print_table(["student, loss", "peak GiB", "above weights GiB", "step s", "tokens/s"], [
            [name, *(r.get("error", "") if k not in r else "not measured" if r[k] is None else f"{r[k]:.2f}"
                     for k in ("peak_gib", "above_weights_gib", "step_s", "tokens_per_s"))]
            for name, r in result["distillation_step"].items()])
    if "inference" in result:
        print(f"\nb. choice scoring, {sizes['mc']} MC questions at the measured prompt lengths\n")
        print_table(["student", "questions/s", "minutes for 515", "peak GiB"], [
            [name, f"{r['questions_per_s']:.1f}", f"{r['minutes_for_515']:.2f}", f"{r['peak_gib']:.2f}"]
            for name, r in result["inference"]["multiple_choice"].items()])
        print(f"\nc. descriptive generation (transformers, static cache), {sizes['descriptive']} questions\n")
        print_table(["student", "batch", "new tokens", "tokens/s", "minutes for 15 x 256"], [
            [name, r["batch"], r["new_tokens"], f"{r['tokens_per_s']:.1f}", f"{r['minutes_for_15_at_256']:.2f}"]
            for name, r in result["inference"]["descriptive"].items()])
    print(f"\nwritten to {args.out}")
    if args.reduced:
        print("plumbing check: reduced sizes, no target judged")
        return 0
    codes = []
    if "inference" in result:
        minutes = result["inference"]["multiple_choice"]["bf16"]["minutes_for_515"]
        codes.append(verdict(minutes <= 20, f"515 MC questions in {minutes:.1f} <= 20 minutes (bf16 student)"))
    full_vs_chunked = result.get("distillation_step", {}).get("full / chunked")
    if full_vs_chunked and full_vs_chunked["peak_gib"] is not None:
        codes.append(verdict(full_vs_chunked["peak_gib"] > 1,
                             f"chunked loss peaks {full_vs_chunked['peak_gib']:.2f}x lower"))
    elif full_vs_chunked:
        codes.append(verdict(False, "chunked against full-vocabulary peak memory: not measured"))
    return max(codes or [0])


if __name__ == "__main__":
    sys.exit(main())
