"""Each quantization method on a tiny model: quantize, save, reload, logits close; bad settings refused."""

import copy

import pytest
import torch
from kedro.io.core import Version
from transformers import LlamaConfig

from fsku_kedro.compression.methods import (
    NF4_BLOCKSIZE,
    CompressionConfigError,
    check_configuration,
    nf4_cpu_packing_misfits,
    quantize,
)
from fsku_kedro.datasets import QuantizedModelDataset
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.compute_dtype import torch_dtype
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer
from fsku_kedro.parameters.compression import AWQSettings, CompressionSettings, GPTQSettings

pytestmark = pytest.mark.slow

CALIBRATION = [
    "전자금융거래법은 금융회사와 전자금융업자가 지켜야 할 안전성 기준을 정한다. " * 4,
    "접근매체를 분실하거나 도난당한 경우 이용자는 즉시 금융회사에 신고해야 한다. " * 4,
    "망분리는 업무용 내부망과 인터넷망을 물리적 또는 논리적으로 나누는 통제이다. " * 4,
    "개인신용정보의 전송요구권은 마이데이터 서비스의 법적 근거가 된다. " * 4,
] * 2
PARAMS = CompressionSettings(gptq=GPTQSettings(group_size=32, backend="torch"))


def _cpu_has_avx512_bf16() -> bool:
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


def _force_nf4_cpu_path(model, packed: bool) -> list:
    """Every 4-bit layer of ``model``, switched to bitsandbytes' packed (AVX512-BF16) CPU path or off it."""
    from bitsandbytes.nn import Linear4bit

    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = packed
    return layers


# The packed path's matrix kernel is registered by bitsandbytes only on a CPU with AVX512-BF16; its
# repacking of the weights runs anywhere and is covered on every CPU by the packing test below.
NEEDS_PACKED_KERNEL = pytest.mark.skipif(
    not _cpu_has_avx512_bf16(), reason="bitsandbytes has no packed 4-bit kernel on a CPU without AVX512-BF16"
)


@pytest.mark.parametrize(
    ("method", "nf4_packed"),
    [
        ("gptq", None),
        ("nf4", False),
        pytest.param("nf4", True, marks=NEEDS_PACKED_KERNEL),
        ("int8", None),
        ("int8_dynamic", None),
    ],
    ids=["gptq", "nf4-unpacked", "nf4-packed", "int8", "int8_dynamic"],
)
def test_quantized_model_reloads_with_logits_close_to_the_original(method, nf4_packed, tiny_llama_dir, tmp_path):
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    original = load_causal_lm(str(tiny_llama_dir))
    model = quantize(method, str(tiny_llama_dir), tokenizer, CALIBRATION, PARAMS, tmp_path / "work")
    dataset = QuantizedModelDataset(str(tmp_path / "saved"), version=Version(None, None))
    dataset.save(ModelBundle(model, tokenizer, f"tiny-{method}"))
    assert list(dataset.last_saved_path.glob("*.safetensors")), "safetensors only"
    assert not list(dataset.last_saved_path.glob("*.bin"))
    reloaded = QuantizedModelDataset(str(tmp_path / "saved"), version=Version(None, None)).load()
    assert reloaded.name == f"tiny-{method}"
    assert "quantization_config" in reloaded.model.config.to_dict()
    floating = {p.dtype for p in reloaded.model.parameters() if p.is_floating_point()}
    assert floating == {torch_dtype("auto")}, "what stays in floating point computes in the auto dtype"
    layers = _force_nf4_cpu_path(reloaded.model, nf4_packed) if method == "nf4" else []
    ids = tokenizer(CALIBRATION[0][:60], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = original(ids).logits.flatten()
        got = reloaded.model(ids).logits.float().flatten()
    correlation = torch.corrcoef(torch.stack([expected, got]))[0, 1]
    assert correlation > 0.9, f"{method}: logits correlation {correlation:.3f}"
    assert not torch.equal(expected, got), "the weights really are quantized"
    if method == "nf4":
        assert len(layers) == 4 * 7
        packed = [bool(getattr(layer.weight.quant_state, "packing_format_for_cpu", False)) for layer in layers]
        assert packed == [nf4_packed] * len(layers), "the forced bitsandbytes CPU path is the one that ran"


def _tiny_config(hidden: int, intermediate: int, heads: int = 4, kv_heads: int = 2) -> LlamaConfig:
    return LlamaConfig(vocab_size=128, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, tie_word_embeddings=True)


@pytest.mark.parametrize(
    ("rows_out", "rows_in"),
    [(32, 64), (64, 128), (96, 192), (16, 64), (48, 64), (32, 32), (64, 96)],
)
def test_the_nf4_packing_rule_is_bitsandbytes_own(rows_out, rows_in):
    """The rule the check applies agrees with bitsandbytes' CPU repacking, which runs on any CPU."""
    from bitsandbytes import functional as F

    torch.manual_seed(0)
    weight, state = F.quantize_4bit(torch.randn(rows_out, rows_in), blocksize=NF4_BLOCKSIZE, quant_type="nf4",
                                    compress_statistics=True)
    config = _tiny_config(hidden=rows_in, intermediate=rows_out, heads=1, kv_heads=1)
    refused = ("model.layers.0.mlp.up_proj", rows_in, rows_out) in nf4_cpu_packing_misfits(config)
    try:
        packed, packed_state = F._convert_weight_packed_for_cpu(weight.clone(), copy.deepcopy(state))
    except (AssertionError, RuntimeError):
        assert refused, f"bitsandbytes cannot pack {rows_out}x{rows_in}, so the check must refuse it"
        return
    assert not refused, f"bitsandbytes packs {rows_out}x{rows_in}, so the check must accept it"
    unpacked, _ = F._convert_weight_packed_for_cpu_inverse(packed, packed_state)
    assert torch.equal(unpacked, weight)


NF4_ONLY = CompressionSettings(methods=["nf4"], serve_method="nf4")


def test_nf4_refuses_layers_that_do_not_fit_the_cpu_packing_on_every_cpu():
    narrow = _tiny_config(hidden=32, intermediate=64)
    with pytest.raises(CompressionConfigError) as refusal:
        check_configuration(CompressionSettings(methods=["nf4"], serve_method="nf4"), narrow, cuda=False)
    message = str(refusal.value)
    assert "nf4: layer model.layers.0.self_attn.q_proj (32 inputs -> 32 outputs)" in message
    assert "out_features a multiple of 32" in message and "in_features a multiple of the 64-weight" in message
    assert "drop nf4 from compression.methods" in message
    # The LM head stays in full precision and is not checked; other methods and CUDA accept the model.
    assert all(name != "lm_head" for name, _, _ in nf4_cpu_packing_misfits(narrow))
    check_configuration(CompressionSettings(methods=["int8", "int8_dynamic"], serve_method="int8"), narrow, cuda=False)
    check_configuration(NF4_ONLY, narrow, cuda=True)
    # The shipped shapes fit: SmolLM2-135M (576 / 1536, 3 KV heads of 64) and the tiny test model.
    check_configuration(NF4_ONLY, _tiny_config(hidden=576, intermediate=1536, heads=9, kv_heads=3), cuda=False)
    check_configuration(NF4_ONLY, _tiny_config(hidden=64, intermediate=128), cuda=False)


def _config(hidden=576, intermediate=1536, heads=9, model_type=None) -> LlamaConfig:
    config = _tiny_config(hidden, intermediate, heads=heads, kv_heads=heads)
    if model_type:
        config.model_type = model_type
    return config


def _gptq(**gptq) -> CompressionSettings:
    return CompressionSettings(methods=["gptq"], serve_method="gptq", gptq=GPTQSettings(**gptq))


def test_bad_settings_name_the_method_and_the_fix():
    with pytest.raises(CompressionConfigError, match=r"gptq: group_size 100 does not divide the model's hidden size 576"):
        check_configuration(_gptq(group_size=100), _config(), cuda=False)
    with pytest.raises(CompressionConfigError, match="group_size to one of"):
        check_configuration(_gptq(group_size=128), _config(hidden=896, intermediate=4864 + 32, heads=14), cuda=False)
    with pytest.raises(CompressionConfigError, match="architecture 'fsku_toy' is not supported by GPTQModel"):
        check_configuration(_gptq(group_size=64), _config(model_type="fsku_toy"), cuda=False)
    with pytest.raises(CompressionConfigError, match="backend 'marlin' needs a CUDA GPU; set compression.gptq.backend: torch"):
        check_configuration(_gptq(group_size=64, backend="marlin"), _config(), cuda=False)
    with pytest.raises(ValueError, match="methods"):
        CompressionSettings(methods=["hqq"])
    with pytest.raises(ValueError, match="serve_method 'gptq' is not among methods"):
        CompressionSettings(methods=["nf4"])
    check_configuration(CompressionSettings(), _config(), cuda=False)


AWQ = CompressionSettings(methods=["awq"], serve_method="awq", dtype="bfloat16", awq=AWQSettings(group_size=32))


def test_awq_saves_reloads_and_keeps_the_logits(tiny_awq_dir, tmp_path):
    check_configuration(AWQ, load_causal_lm(str(tiny_awq_dir)).config, cuda=False)
    tokenizer = load_tokenizer(str(tiny_awq_dir))
    original = load_causal_lm(str(tiny_awq_dir))
    model = quantize("awq", str(tiny_awq_dir), tokenizer, CALIBRATION, AWQ, tmp_path / "work")
    dataset = QuantizedModelDataset(str(tmp_path / "saved"), version=Version(None, None))
    dataset.save(ModelBundle(model, tokenizer, "tiny-awq"))
    assert list(dataset.last_saved_path.glob("*.safetensors")) and not list(dataset.last_saved_path.glob("*.bin"))
    reloaded = QuantizedModelDataset(str(tmp_path / "saved"), version=Version(None, None)).load()
    assert reloaded.model.config.to_dict()["quantization_config"]["quant_method"] == "awq"
    ids = tokenizer(CALIBRATION[0][:60], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = original(ids).logits.float().flatten()
        got = reloaded.model(ids).logits.float().flatten()
    correlation = torch.corrcoef(torch.stack([expected, got]))[0, 1]
    assert correlation > 0.95, f"awq: logits correlation {correlation:.3f}"
    assert not torch.equal(expected, got), "the weights really are quantized"


def test_awq_refuses_what_its_cpu_kernels_and_clip_search_cannot_run():
    with pytest.raises(CompressionConfigError, match=r"awq: layer model.layers.0.self_attn.k_proj has 32 outputs"):
        check_configuration(AWQ, _tiny_config(hidden=64, intermediate=128), cuda=False)
    with pytest.raises(CompressionConfigError, match=r"awq: group_size 32 does not divide the model's hidden size 48"):
        check_configuration(AWQ, _tiny_config(hidden=48, intermediate=128, heads=1, kv_heads=1), cuda=False)
    float32 = AWQ.model_copy(update={"dtype": "float32"})
    with pytest.raises(CompressionConfigError, match="CPU AWQ kernels compute in bfloat16 only.*use gptq on this CPU"):
        check_configuration(float32, _config(), cuda=False)
    check_configuration(float32, _config(), cuda=True)
    # Qwen2.5-1.5B's shapes fit at the served group size (1536 / 8960, 2 KV heads of 128).
    check_configuration(AWQ.model_copy(update={"awq": AWQSettings(group_size=128)}),
                        _tiny_config(hidden=1536, intermediate=8960, heads=12, kv_heads=2), cuda=False)
