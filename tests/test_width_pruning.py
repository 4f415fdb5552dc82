"""Width pruning (Minitron): each MLP keeps the intermediate channels most active on calibration text,
optionally refits the kept down_proj columns by least squares, and the pruned model saves and reloads
with its new shapes."""

from __future__ import annotations

import pytest
import torch

from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.derivation import derive
from fsku_kedro.models.pruning import compensated_down_proj, mlp_channel_gram, mlp_channel_importance, width_prune
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer

TEXTS = ["전자금융거래법은 금융회사의 안전성 확보 의무를 정한다.", "망분리는 내부망과 인터넷망을 나누는 통제이다.",
         "접근매체를 분실한 이용자는 즉시 금융회사에 알려야 한다."]


def _scripted(tiny_llama_dir):
    """The tiny Llama (128 MLP channels a layer) with, in every layer, half its channels silenced (their
    up_proj rows zero, so their activation is zero) and another quarter made loud (rows times 100)."""
    model = load_causal_lm(str(tiny_llama_dir), dtype="float32")
    generator = torch.Generator().manual_seed(0)
    silent, loud = [], []
    with torch.no_grad():
        for layer in model.model.layers:
            order = torch.randperm(128, generator=generator)
            silent.append(set(order[:64].tolist()))
            loud.append(set(order[64:96].tolist()))
            layer.mlp.up_proj.weight[order[:64]] = 0.0
            layer.mlp.up_proj.weight[order[64:96]] *= 100.0
    return model, silent, loud


def test_the_most_active_channels_are_kept_and_silent_ones_cost_nothing(tiny_llama_dir):
    model, silent, loud = _scripted(tiny_llama_dir)
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    importance = mlp_channel_importance(model, tokenizer, TEXTS)
    assert len(importance) == 4 and all(scores.shape == (128,) for scores in importance)
    for scores, quiet in zip(importance, silent):
        assert all(scores[c] == 0.0 for c in quiet) and all(scores[c] > 0.0 for c in set(range(128)) - quiet)
    ids = tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = model(input_ids=ids).logits
    kept_loud = [sorted(torch.topk(scores, 32).indices.tolist()) for scores in importance]
    assert [set(k) for k in kept_loud] == loud, "the loudest quarter ranks first in every layer"
    width_prune(model, importance, 64)
    with torch.no_grad():
        after = model(input_ids=ids).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)  # only silent channels were dropped
    assert model.config.intermediate_size == 64 and model.config.width_pruned_from == 128


def test_a_width_pruned_model_saves_and_reloads_with_its_shapes(tiny_llama_dir, tmp_path):
    model, _, _ = _scripted(tiny_llama_dir)
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    width_prune(model, mlp_channel_importance(model, tokenizer, TEXTS), 48)
    model.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = load_causal_lm(str(tmp_path), dtype="float32")
    mlp = reloaded.model.layers[2].mlp
    assert (mlp.gate_proj.weight.shape, mlp.up_proj.weight.shape, mlp.down_proj.weight.shape) == \
        ((48, 64), (48, 64), (64, 48))
    assert reloaded.config.intermediate_size == 48 and reloaded.config.width_pruned_from == 128
    ids = tokenizer(TEXTS[1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
    with pytest.raises(ValueError, match="cannot keep 49 of 48"):
        width_prune(reloaded, mlp_channel_importance(reloaded, tokenizer, TEXTS), 49)


def test_a_derived_student_is_cut_in_depth_then_width_and_leaves_its_source_whole(tiny_llama_dir):
    source = ModelBundle(load_causal_lm(str(tiny_llama_dir), dtype="float32"), load_tokenizer(str(tiny_llama_dir)),
                         "tiny")
    before = [p.clone() for p in source.model.parameters()]
    student = derive(source, TEXTS, 3, "block_influence", 64)
    assert student.name == "tiny-bi3-mlp64" and student.path is None
    config = student.model.config
    assert (config.num_hidden_layers, config.intermediate_size, len(config.depth_kept_layers)) == (3, 64, 3)
    assert student.model.model.layers[0].mlp.up_proj.weight.shape == (64, 64)
    assert all(torch.equal(a, b) for a, b in zip(before, source.model.parameters())), "the source is untouched"
    assert source.model.config.num_hidden_layers == 4
    whole = derive(source, [], 4, "block_influence", None)
    assert whole.model is source.model and whole.name == "tiny-bi4", "every layer kept: the source itself"
    with pytest.raises(ValueError, match="need calibration passages"):
        derive(source, [], 2, "block_influence", None)
    with pytest.raises(ValueError, match="cannot keep 5 layers"):
        derive(source, TEXTS, 5, "evenly_spaced", None)

def _echoes(tiny_llama_dir):
    """The tiny Llama with, in every layer, channels 64..127 made quiet echoes of channels 0..63: the
    same gate row, the up row times 0.001 (so the activation is 0.001 times the partner's and the channel
    ranks last) and a down_proj column times 1000 (so the echo still writes as much as its partner)."""
    model = load_causal_lm(str(tiny_llama_dir), dtype="float32")
    with torch.no_grad():
        for layer in model.model.layers:
            mlp = layer.mlp
            mlp.gate_proj.weight[64:] = mlp.gate_proj.weight[:64]
            mlp.up_proj.weight[64:] = mlp.up_proj.weight[:64] * 1e-3
            mlp.down_proj.weight[:, 64:] = torch.randn(mlp.down_proj.weight[:, 64:].shape,
                                                       generator=torch.Generator().manual_seed(1)) * 1e3 * 0.02
    return model


def test_least_squares_compensation_absorbs_dropped_channels_that_echo_kept_ones(tiny_llama_dir):
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    texts = TEXTS * 2 + [text[::-1] for text in TEXTS]
    ids = tokenizer(TEXTS[2], return_tensors="pt")["input_ids"]
    outputs = {}
    for compensated in (False, True):
        model = _echoes(tiny_llama_dir)
        with torch.no_grad():
            before = model(input_ids=ids).logits
        importance = mlp_channel_importance(model, tokenizer, texts)
        assert all(set(torch.topk(scores, 64).indices.tolist()) == set(range(64)) for scores in importance)
        grams = mlp_channel_gram(model, tokenizer, texts) if compensated else None
        assert grams is None or all(gram.shape == (128, 128) and torch.allclose(gram, gram.T) for gram in grams)
        width_prune(model, importance, 64, grams, damping=1e-9)
        with torch.no_grad():
            outputs[compensated] = (model(input_ids=ids).logits - before).abs().max().item()
    assert outputs[True] < 1e-3, "every dropped echo is written back through its kept partner"
    assert outputs[False] > 100 * max(outputs[True], 1e-6), "plain pruning loses what the echoes wrote"


def test_compensation_with_a_large_ridge_keeps_the_columns_and_refuses_mismatched_grams(tiny_llama_dir):
    model = _echoes(tiny_llama_dir)
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    grams = mlp_channel_gram(model, tokenizer, TEXTS)
    weight = model.model.layers[0].mlp.down_proj.weight
    keep = torch.arange(64)
    torch.testing.assert_close(compensated_down_proj(weight, grams[0], keep, damping=1e12), weight[:, :64])
    moved = compensated_down_proj(weight, grams[0], keep, damping=1e-9)
    assert moved.shape == (64, 64) and not torch.allclose(moved, weight[:, :64])
    with pytest.raises(ValueError, match="3 Gram matrices for 4 layers"):
        width_prune(model, mlp_channel_importance(model, tokenizer, TEXTS), 64, grams[:3])


def test_a_compensated_student_is_named_for_it_and_needs_width_pruning(tiny_llama_dir):
    from fsku_kedro.parameters.student_shape import StudentShapeSettings

    source = ModelBundle(load_causal_lm(str(tiny_llama_dir), dtype="float32"), load_tokenizer(str(tiny_llama_dir)),
                         "tiny")
    student = derive(source, TEXTS, None, "evenly_spaced", 64, compensation_damping=0.01)
    assert student.name == "tiny-mlp64c" and student.model.config.intermediate_size == 64
    assert StudentShapeSettings(mlp_channels=64, mlp_compensation_damping=0.01).mlp_compensation_damping == 0.01
    with pytest.raises(ValueError, match="set mlp_channels too"):
        StudentShapeSettings(mlp_compensation_damping=0.01)
