"""The same results whatever SIMD level the CPU offers.

FAISS, kiwipiepy and PyTorch pick their kernels from the CPU at run time, so one machine type can take
different code paths on different hosts. Each library has a switch that forces a lower level; these
tests run the project's own code once per level this CPU supports, each in a fresh process (the
switches are read at import), and compare the outputs:

- FAISS (``FAISS_SIMD_LEVEL``): exact and IVF search over the project's ``DenseIndex``;
- kiwipiepy (``KIWI_ARCH_TYPE``): the BM25 morpheme analysis;
- PyTorch (``ATEN_CPU_CAPABILITY``): the quantized forward passes. bitsandbytes registers its int8
  ``torch._int_mm`` kernel only at the AVX512 capability, torchao's int8 dynamic path uses integer
  matrix products, and GPTQModel's CPU kernel the int4-pack matrix product, each with per-level kernels.

bitsandbytes' packed AVX512-BF16 4-bit path has no such switch; tests/compression/test_methods.py
forces it on and off through the module attribute instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsku_kedro.models.compute_dtype import auto_dtype, cpu_flags
from tests.conftest import CORPUS_DIR, PROJECT_ROOT

pytestmark = pytest.mark.slow


FLAGS = cpu_flags()
X86 = "sse2" in FLAGS


def _run(code: str, env: dict[str, str], *args: str) -> dict:
    """``code`` in a fresh interpreter with ``env`` added; it prints one JSON line last."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args], env={**os.environ, **env}, cwd=PROJECT_ROOT, capture_output=True,
        text=True, timeout=600,
    )
    assert result.returncode == 0, f"{env}: {result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


FAISS_CODE = """
import json, numpy as np, faiss
from fsku_kedro.knowledge.dense import DenseIndex
rng = np.random.default_rng(0)
vectors = rng.standard_normal((3000, 64)).astype("float32")
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
queries = vectors[:25] + 0.05 * rng.standard_normal((25, 64)).astype("float32")
ids = [f"c{i}" for i in range(len(vectors))]
out = {"level": faiss.SIMDConfig.get_level_name()}
for name, threshold in (("flat", 10_000), ("ivf", 1_000)):
    index = DenseIndex.build(ids, vectors, "random", flat_threshold=threshold, nlist_factor=1.0, target_recall=0.95,
                             seed=0)
    hits = index.search(queries, 5)
    out[name] = {"factory": index.factory, "nprobe": index.nprobe, "ids": [[c for c, _ in row] for row in hits],
                 "scores": [[s for _, s in row] for row in hits]}
print(json.dumps(out))
"""


@pytest.mark.skipif(not X86, reason="FAISS SIMD levels below are x86 ones")
def test_faiss_search_is_the_same_at_every_simd_level(tmp_path):
    levels = ["NONE", "AVX2"] + (["AVX512"] if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= FLAGS else [])
    results = {level: _run(FAISS_CODE, {"FAISS_SIMD_LEVEL": level}) for level in levels}
    reference = results["NONE"]
    for level, result in results.items():
        assert result["level"] == level, "the forced level is the one FAISS used"
        for kind in ("flat", "ivf"):
            assert result[kind]["factory"] == reference[kind]["factory"]
            assert result[kind]["nprobe"] == reference[kind]["nprobe"], f"{level}: tuned nprobe"
            assert result[kind]["ids"] == reference[kind]["ids"], f"{level}: {kind} ranking"
            np.testing.assert_allclose(result[kind]["scores"], reference[kind]["scores"], atol=1e-5)
    assert reference["ivf"]["factory"].startswith("IVF")


@pytest.mark.skipif(not X86, reason="kiwipiepy's forced architectures below are x86 ones")
def test_kiwi_morphemes_are_the_same_at_every_simd_level(tmp_path):
    text = "\n".join(p.read_text(encoding="utf-8")[:4000] for p in sorted(CORPUS_DIR.glob("*.md"))[:3])
    source = tmp_path / "text.txt"
    source.write_text(text, encoding="utf-8")
    code = (
        "import json, pathlib, sys\n"
        "from fsku_kedro.knowledge.morphemes import MorphemeTokenizer\n"
        "lines = pathlib.Path(sys.argv[1]).read_text(encoding='utf-8').splitlines()\n"
        "print(json.dumps(MorphemeTokenizer('kiwi').tokenize_many([l for l in lines if l.strip()])))\n"
    )
    candidates = {"sse2": "sse2", "sse4_1": "sse4_1", "avx2": "avx2", "avx512bw": "avx512bw",
                  "avx512vnni": "avx512_vnni"}
    levels = [level for level, flag in candidates.items() if flag in FLAGS]
    results = {level: _run(code, {"KIWI_ARCH_TYPE": level}, str(source)) for level in levels}
    reference = results["sse2"]
    assert sum(len(tokens) for tokens in reference) > 1000
    for level, tokens in results.items():
        assert tokens == reference, f"kiwipiepy {level} analyses the corpus differently from sse2"


QUANTIZED_CODE = """
import json, sys, pathlib, torch
from fsku_kedro.models.loading import load_quantized
from fsku_kedro.models.sources import load_tokenizer
root = pathlib.Path(sys.argv[1])
tokenizer = load_tokenizer(str(root / "int8"))
ids = tokenizer("전자금융거래법은 금융회사와 전자금융업자가 지켜야 할 안전성 기준을 정한다.", return_tensors="pt")["input_ids"]
out = {"capability": torch.backends.cpu.get_cpu_capability()}
for method in sys.argv[2:]:
    bundle = load_quantized(root / method, False)
    for module in bundle.model.modules():  # bitsandbytes' packed 4-bit path has its own test
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    with torch.no_grad():
        out[method] = bundle.model(ids).logits.float().flatten().tolist()
print(json.dumps(out))
"""


QUANTIZED_METHODS = ["gptq", "awq", "nf4", "int8", "int8_dynamic"]


@pytest.fixture(scope="module")
def quantized_dir(tiny_llama_dir, tiny_awq_dir, tmp_path_factory) -> Path:
    from kedro.io.core import Version

    from fsku_kedro.compression.methods import quantize
    from fsku_kedro.datasets import QuantizedModelDataset
    from fsku_kedro.models.bundle import ModelBundle
    from fsku_kedro.models.sources import load_tokenizer
    from tests.compression.test_methods import AWQ, CALIBRATION, PARAMS

    root = tmp_path_factory.mktemp("quantized")
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    for method in QUANTIZED_METHODS:
        source, settings = (tiny_awq_dir, AWQ) if method == "awq" else (tiny_llama_dir, PARAMS)
        model = quantize(method, str(source), tokenizer, CALIBRATION, settings, root / "work" / method)
        dataset = QuantizedModelDataset(str(root / "saved" / method), version=Version(None, None))
        dataset.save(ModelBundle(model, tokenizer, method))
        (root / method).symlink_to(dataset.last_saved_path)
    return root


@pytest.mark.skipif(not X86, reason="the forced PyTorch capabilities below are x86 ones")
def test_quantized_forward_is_the_same_at_every_torch_cpu_capability(quantized_dir):
    methods = QUANTIZED_METHODS
    capabilities = ["default", "avx2"] + (["avx512"] if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= FLAGS else [])
    results = {
        capability: _run(QUANTIZED_CODE, {"ATEN_CPU_CAPABILITY": capability}, str(quantized_dir), *methods)
        for capability in capabilities
    }
    reference = results["default"]
    native_bf16 = auto_dtype().dtype == "bfloat16"
    for capability, result in results.items():
        assert result["capability"] == capability.upper(), "the forced capability is the one PyTorch used"
        for method in methods:
            got, expected = np.array(result[method]), np.array(reference[method])
            assert got.shape == expected.shape
            # Kernels differ in summation order only. That moves float32 results in the last bits; GPTQModel's
            # CPU kernels (gptq, awq) compute in bfloat16 (a rounding step of 2^-8), and torchao's dynamic int8 path may
            # round an activation to the neighbouring int8 step (1/127 of its row's range).
            tolerance = {"gptq": 2**-6, "awq": 2**-6, "int8_dynamic": 2 / 127}.get(method, 1e-4)
            if native_bf16:
                # the models were quantized in auto, bfloat16 on this CPU, and compute in it: kernels of
                # different capabilities then differ by bfloat16's rounding step
                tolerance = max(tolerance, 2**-6)
            difference = np.abs(got - expected).max() / np.abs(expected).max()
            assert difference <= tolerance, f"{method} at {capability}: {difference:.2e}"


AUTO_DTYPE_CODE = """
import json, sys, torch
from fsku_kedro.answering.choice_scoring import score_choices
from fsku_kedro.models.compute_dtype import auto_dtype
from fsku_kedro.models.loading import load_any_model
bundle = load_any_model(__import__("pathlib").Path(sys.argv[1]))
chats = [[{"role": "user", "content": f"전자금융거래법 문제 {i}\\n1 접근매체\\n2 전자서명\\n3 망분리\\n4 암호화"}] for i in range(6)]
choices = score_choices(bundle, chats, [4] * 6, batch_size=3)
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "auto": auto_dtype().dtype,
                  "weights": str(next(bundle.model.parameters()).dtype),
                  "probabilities": [[c.probabilities[n] for n in range(1, 5)] for c in choices]}))
"""


@pytest.mark.skipif(not X86, reason="the forced PyTorch capabilities below are x86 ones")
def test_auto_dtype_follows_the_kernel_level_and_scores_agree(tiny_llama_dir):
    """``auto`` is bfloat16 only where the CPU's bf16 units may be used: held to AVX2 kernels, a CPU with
    AVX512-BF16 computes in float32, as an AVX2-only CPU does; choice scoring agrees across levels
    (to bfloat16's rounding where one level computes in it)."""
    native_bf16 = bool({"avx512_bf16", "amx_bf16"} & FLAGS)
    levels = {"default": {"ATEN_CPU_CAPABILITY": "default"},
              "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= FLAGS:
        levels["avx512"] = {"ATEN_CPU_CAPABILITY": "avx512"}
    results = {level: _run(AUTO_DTYPE_CODE, env, str(tiny_llama_dir)) for level, env in levels.items()}
    for level, result in results.items():
        expected = "bfloat16" if native_bf16 and level == "avx512" else "float32"
        assert result["auto"] == expected, f"{level}: auto is {result['auto']}"
        assert result["weights"] == f"torch.{expected}"
    reference = np.array(results["avx2"]["probabilities"])
    for level, result in results.items():
        tolerance = 2**-6 if result["auto"] == "bfloat16" else 1e-5
        np.testing.assert_allclose(result["probabilities"], reference, atol=tolerance, err_msg=level)
