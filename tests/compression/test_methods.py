"""Each quantization method on a tiny model: quantize, save, reload, logits close; bad settings refused."""

from types import SimpleNamespace

import pytest
import torch
from kedro.io.core import Version

from fsku_kedro.compression.methods import CompressionConfigError, check_configuration, quantize
from fsku_kedro.datasets import QuantizedModelDataset
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer

pytestmark = pytest.mark.slow

CALIBRATION = [
    "전자금융거래법은 금융회사와 전자금융업자가 지켜야 할 안전성 기준을 정한다. " * 4,
    "접근매체를 분실하거나 도난당한 경우 이용자는 즉시 금융회사에 신고해야 한다. " * 4,
    "망분리는 업무용 내부망과 인터넷망을 물리적 또는 논리적으로 나누는 통제이다. " * 4,
    "개인신용정보의 전송요구권은 마이데이터 서비스의 법적 근거가 된다. " * 4,
] * 2
PARAMS = {"gptq": {"bits": 4, "group_size": 32, "backend": "torch", "batch_size": 4}, "nf4": {"compute_dtype": "float32"}}


@pytest.mark.parametrize("method", ["gptq", "nf4", "int8", "int8_dynamic"])
def test_quantized_model_reloads_with_logits_close_to_the_original(method, tiny_llama_dir, tmp_path):
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
    ids = tokenizer(CALIBRATION[0][:60], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = original(ids).logits.flatten()
        got = reloaded.model(ids).logits.float().flatten()
    correlation = torch.corrcoef(torch.stack([expected, got]))[0, 1]
    assert correlation > 0.9, f"{method}: logits correlation {correlation:.3f}"
    assert not torch.equal(expected, got), "the weights really are quantized"


def _config(**overrides):
    values = {"hidden_size": 576, "intermediate_size": 1536, "model_type": "llama"} | overrides
    return SimpleNamespace(**values)


def test_bad_settings_name_the_method_and_the_fix():
    with pytest.raises(CompressionConfigError, match=r"gptq: group_size 100 does not divide the model's hidden size 576"):
        check_configuration(["gptq"], {"gptq": {"group_size": 100}}, _config(), cuda=False)
    with pytest.raises(CompressionConfigError, match="group_size to one of"):
        check_configuration(["gptq"], {"gptq": {"group_size": 128}}, _config(hidden_size=896, intermediate_size=4864 + 32),
                            cuda=False)
    with pytest.raises(CompressionConfigError, match="architecture 'fsku_toy' is not supported by GPTQModel"):
        check_configuration(["gptq"], {"gptq": {"group_size": 64}}, _config(model_type="fsku_toy"), cuda=False)
    with pytest.raises(CompressionConfigError, match="backend 'marlin' needs a CUDA GPU; set compression.gptq.backend: torch"):
        check_configuration(["gptq"], {"gptq": {"group_size": 64, "backend": "marlin"}}, _config(), cuda=False)
    with pytest.raises(CompressionConfigError, match="unknown compression method"):
        check_configuration(["awq"], {}, _config(), cuda=False)
    check_configuration(["gptq", "nf4", "int8", "int8_dynamic"], {"gptq": {"group_size": 64}}, _config(), cuda=False)
