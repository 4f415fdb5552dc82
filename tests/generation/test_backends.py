import pytest

from fsku_kedro.generation.backends import TransformersBackend, make_backend
from fsku_kedro.models import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer
from fsku_kedro.parameters.generation import BackendSettings, SamplingSettings

QUESTIONS = [
    "전자금융거래법의 목적은?",
    "접근매체를 분실한 이용자는 무엇을 해야 하는가? 금융회사에 즉시 알려야 하는지 설명하세요.",
    "망분리",
    "개인정보 유출 통지 기한과 그 대상, 그리고 통지해야 할 내용을 모두 설명하세요.",
    "AES",
    "클라우드 서비스 이용 절차는?",
    "전자서명의 효력은 무엇인가?",
    "랜섬웨어 감염 시 첫 조치는?",
    "CISO의 역할",
    "신용정보의 보존 기간은 몇 년인가?",
]


def _reference_backend(bundle, batch_size):
    """The transformers backend with its static KV cache, quiet."""
    return TransformersBackend(bundle, batch_size=batch_size, cache_implementation="static", show_progress=False)


@pytest.fixture(scope="module")
def bundle(tiny_llama_dir):
    return ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny", str(tiny_llama_dir))


def chats(texts):
    return [[{"role": "user", "content": text}] for text in texts]


def test_batched_greedy_equals_one_at_a_time(bundle):
    params = SamplingSettings(max_new_tokens=12)
    batched = _reference_backend(bundle, 8).generate(chats(QUESTIONS), params)
    single = _reference_backend(bundle, 1).generate(chats(QUESTIONS), params)
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in single]


def test_results_keep_input_order_and_report_finish(bundle):
    backend = _reference_backend(bundle, 4)
    completions = backend.generate(chats(QUESTIONS), SamplingSettings(max_new_tokens=5))
    assert len(completions) == len(QUESTIONS)
    for question, completion in zip(QUESTIONS, completions):
        assert completion.prompt_tokens == len(bundle.tokenizer(backend.render(chats([question])[0]),
                                                                add_special_tokens=False)["input_ids"])
        assert completion.finish_reason in {"stop", "length"}
        assert completion.completion_tokens <= 5
        if completion.finish_reason == "length":
            assert completion.completion_tokens == 5


def test_seeded_sampling_is_reproducible(bundle):
    backend = _reference_backend(bundle, 4)
    params = SamplingSettings(max_new_tokens=10, do_sample=True, temperature=1.0, seed=3)
    first = [c.text for c in backend.generate(chats(QUESTIONS[:4]), params)]
    assert first == [c.text for c in backend.generate(chats(QUESTIONS[:4]), params)]


def test_backend_selection(bundle):
    assert isinstance(make_backend(bundle, BackendSettings(batch_size=2)), TransformersBackend)
    with pytest.raises(ValueError, match="backend"):
        BackendSettings(backend="tgi")


def test_vllm_that_cannot_run_falls_back_to_transformers_with_one_log_line(bundle, monkeypatch, caplog):
    from fsku_kedro.generation import backends, vllm_engine

    monkeypatch.setattr(vllm_engine, "unavailable_reason", lambda: "vLLM does not import (ModuleNotFoundError)")
    backends._warn_once.cache_clear()
    settings = BackendSettings(backend="vllm", batch_size=3)
    with caplog.at_level("WARNING", logger="fsku_kedro.generation.backends"):
        first, second = make_backend(bundle, settings), make_backend(bundle, settings)
    assert isinstance(first, TransformersBackend) and isinstance(second, TransformersBackend)
    assert first.batch_size == 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [("generation.backend is vllm, but vLLM does not import (ModuleNotFoundError); "
                      "the transformers backend serves instead")]
    # A model held only in memory cannot be loaded by vLLM either: the reason names it.
    monkeypatch.setattr(vllm_engine, "unavailable_reason", lambda: None)
    in_memory = ModelBundle(bundle.model, bundle.tokenizer, "in-memory")
    with caplog.at_level("WARNING", logger="fsku_kedro.generation.backends"):
        assert isinstance(make_backend(in_memory, settings), TransformersBackend)
    assert "in-memory is held in memory only" in caplog.records[-1].getMessage()
    # Too little free memory for a second copy of the model: transformers serves, nothing is killed.
    monkeypatch.setattr(vllm_engine, "cuda_present", lambda: False)
    monkeypatch.setattr(vllm_engine, "available_gib", lambda: 1.5)
    with caplog.at_level("WARNING", logger="fsku_kedro.generation.backends"):
        assert isinstance(make_backend(bundle, settings), TransformersBackend)
    assert "1.5 GiB of memory is free and the engine needs about 5.0 GiB" in caplog.records[-1].getMessage()
    assert vllm_engine.ENGINES.llm is None
    backends._warn_once.cache_clear()
