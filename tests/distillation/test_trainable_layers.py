"""Training only the layers next to the blocks depth pruning removed (``lora.layers: next_to_removed``)."""

import copy
import re

import pytest
import torch
from transformers import AutoModelForCausalLM

from fsku_kedro.distillation.merging import extract_adapter, merge_adapter
from fsku_kedro.distillation.training import build_trainer, train_round
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.pruning import depth_prune, next_to_removed
from fsku_kedro.models.sources import load_causal_lm
from fsku_kedro.parameters.distillation import LoraSettings
from tests.distillation.conftest import training_parameters

pytestmark = pytest.mark.slow


def _settings(**training):
    settings = training_parameters(**training)
    return settings.model_copy(update={"lora": LoraSettings(r=8, alpha=16, layers="next_to_removed")})


def test_the_pruning_record_names_the_layers_beside_each_cut_and_survives_a_reload(tiny_llama_dir, tmp_path):
    model = load_causal_lm(str(tiny_llama_dir))
    assert next_to_removed(model.config) == [0, 1, 2, 3], "an unpruned model: every layer"
    depth_prune(model, [0, 2, 3])  # layer 1 of 4 removed
    assert model.config.depth_kept_layers == [0, 2, 3] and model.config.depth_pruned_from == 4
    assert next_to_removed(model.config) == [0, 1], "original layers 0 and 2, now 0 and 1"
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert next_to_removed(reloaded.config) == [0, 1]
    depth_prune(reloaded, [0, 2])  # original 0 and 3 remain: 1 and 2 are gone
    assert reloaded.config.depth_kept_layers == [0, 3] and next_to_removed(reloaded.config) == [0, 1]


def test_adapters_sit_only_beside_the_cuts_and_the_round_trains(tiny_llama_dir, teacher, fixed_pairs, tmp_path):
    model = load_causal_lm(str(tiny_llama_dir))
    depth_prune(model, [0, 1, 3])  # original layer 2 removed: new layers 1 and 2 border it
    student = ModelBundle(model, teacher.tokenizer, "tiny-pruned")
    trainer = build_trainer("seqkd", ModelBundle(copy.deepcopy(model), student.tokenizer, "s"), teacher, fixed_pairs,
                            _settings(), tmp_path / "probe")
    adapted = {int(re.search(r"layers\.(\d+)\.", name).group(1))
               for name, _ in trainer.model.named_parameters() if "lora_A" in name}
    assert adapted == {1, 2}
    base = copy.deepcopy(model)
    trained, history = train_round("seqkd", student, teacher, fixed_pairs, _settings(), tmp_path / "train")
    merged = merge_adapter(ModelBundle(copy.deepcopy(base), student.tokenizer, "s"), extract_adapter(trained), "m").model
    before, after = base.state_dict(), merged.state_dict()
    changed = {int(re.search(r"layers\.(\d+)\.", key).group(1)) for key in before
               if "layers." in key and not torch.equal(before[key], after[key])}
    assert changed == {1, 2}, "the merged student differs from its base in the trained layers only"
    losses = [record["loss"] for record in history if "loss" in record]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    with pytest.raises(ValueError, match="a list of module names"):
        LoraSettings(target_modules="all-linear", layers="next_to_removed")
