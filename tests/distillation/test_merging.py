"""Adapters as versioned data and PEFT merging."""

import copy

import torch
from kedro.io.core import Version

from fsku_kedro.datasets import LoraAdapterDataset
from fsku_kedro.distillation.merging import extract_adapter, merge_adapter
from fsku_kedro.distillation.training import train_round
from fsku_kedro.models.bundle import ModelBundle
from tests.distillation.conftest import training_parameters


def test_saved_adapter_merges_into_the_same_function(teacher, student, fixed_pairs, tmp_path):
    base = copy.deepcopy(student.model)
    trained, _ = train_round("kd", student, teacher, fixed_pairs, training_parameters(max_steps=2, learning_rate=5e-2),
                             tmp_path / "train")
    adapter = extract_adapter(trained)
    assert adapter.weights and all("lora_" in key for key in adapter.weights)

    dataset = LoraAdapterDataset(str(tmp_path / "adapter"), version=Version(None, None))
    dataset.save(adapter)
    assert (dataset.last_saved_path / "adapter_model.safetensors").is_file()
    loaded = LoraAdapterDataset(str(tmp_path / "adapter"), version=Version(None, None)).load()
    assert loaded.config.r == 4 and loaded.weights.keys() == adapter.weights.keys()

    ids = student.tokenizer("금융회사는 이용자에게", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = base(ids).logits
    merged = merge_adapter(ModelBundle(base, student.tokenizer, "tiny-student"), loaded, name="tiny-student+r1")
    assert merged.name == "tiny-student+r1"
    assert not any("lora_" in name for name, _ in merged.model.named_parameters())
    trained.eval()
    merged.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged.model(ids).logits, trained(input_ids=ids).logits, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(before, merged.model(ids).logits, atol=1e-4), "training changed the function"
