"""How the vLLM engine is started from the typed settings, on a GPU (the gpu environment) and on a
CPU, and how a bad value is refused before anything runs. Needs no vLLM: it checks the arguments and
the environment the engine would be given (test_vllm_backend.py runs the engine itself)."""

from __future__ import annotations

import json

import pytest

from fsku_kedro.generation.vllm_engine import (
    EngineSpec,
    adapter_id,
    cpu_environment,
    engine_arguments,
    lora_rank,
    memory_shortfall,
    threads_bind,
    weights_gib,
)
from fsku_kedro.parameters.generation import BackendSettings, VLLMSettings, physical_memory_gib
from tests.test_settings import _problems, _resolved


def test_all_cores_go_to_the_engine_split_between_tensor_parallel_ranks():
    assert threads_bind("all", 1, [0, 1]) == "0,1"
    assert threads_bind("all", 2, [0, 1, 2, 3]) == "0,1|2,3"
    assert threads_bind("auto", 1, [0, 1]) == "auto"
    assert threads_bind("0-3", 1, [0, 1]) == "0-3"
    with pytest.raises(ValueError, match="tensor_parallel_size 4 needs at least 4 cores"):
        threads_bind("all", 4, [0, 1])


def test_the_gpu_environment_starts_vllm_on_the_gpu_with_its_typed_settings():
    teacher = BackendSettings.model_validate(
        {k: v for k, v in _resolved("gpu")["teacher"]["generation"].items() if k in BackendSettings.model_fields})
    assert teacher.backend == "vllm"
    arguments = engine_arguments(EngineSpec("/models/teacher", "bfloat16", teacher.vllm), on_gpu=True)
    assert arguments == {"model": "/models/teacher", "dtype": "bfloat16", "tensor_parallel_size": 1,
                         "max_model_len": None, "enable_prefix_caching": True, "enforce_eager": False,
                         "trust_remote_code": False, "gpu_memory_utilization": 0.85}


def test_on_a_cpu_the_kv_cache_is_gib_of_ram_and_the_graph_runs_eagerly():
    settings = VLLMSettings(cpu_kv_cache_gib=3, tensor_parallel_size=1)
    arguments = engine_arguments(EngineSpec("/m", "float32", settings), on_gpu=False)
    assert "gpu_memory_utilization" not in arguments and arguments["enforce_eager"] is True
    assert arguments["block_size"] == 32
    assert cpu_environment(settings, [0, 1]) == {"VLLM_CPU_KVCACHE_SPACE": "3", "VLLM_CPU_OMP_THREADS_BIND": "0,1"}
    compiled = engine_arguments(EngineSpec("/m", "float32", VLLMSettings(enforce_eager=False)), on_gpu=False)
    assert compiled["enforce_eager"] is False


def test_a_lora_adapter_starts_the_engine_with_the_smallest_rank_that_holds_it(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4}), encoding="utf-8")
    assert lora_rank(str(tmp_path)) == 8
    arguments = engine_arguments(EngineSpec("/m", "bfloat16", VLLMSettings(lora_path=str(tmp_path)), 8), on_gpu=True)
    assert (arguments["enable_lora"], arguments["max_lora_rank"], arguments["max_loras"]) == (True, 8, 1)
    with pytest.raises(FileNotFoundError, match="holds no adapter_config.json"):
        lora_rank(str(tmp_path / "missing"))


def test_an_adapter_is_known_by_its_weights_not_its_folder(tmp_path):
    """One engine serves adapters in turn under their ids; an adapter retrained in the same folder must
    not be served from the engine's cache of the one it replaced."""
    first, second = tmp_path / "round_1", tmp_path / "round_2"
    for folder, weights in ((first, b"weights one"), (second, b"weights one")):
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8}), encoding="utf-8")
        (folder / "adapter_model.safetensors").write_bytes(weights)
    assert adapter_id(str(first)) == adapter_id(str(second)) > 0
    (first / "adapter_model.safetensors").write_bytes(b"weights two")  # retrained where it was
    assert adapter_id(str(first)) != adapter_id(str(second))


def test_an_impossible_or_misspelt_kv_cache_is_refused_with_the_fix(tmp_path):
    too_much = int(physical_memory_gib()) + 1
    message = _problems(tmp_path, {"inference": {"generation": {"backend": "vllm",
                                                                "vllm": {"cpu_kv_cache_gib": too_much}}}})
    assert "inference.generation.vllm" in message and f"cpu_kv_cache_gib {too_much} is not below" in message
    assert "set it to a few GiB" in message
    message = _problems(tmp_path / "2", {"inference": {"generation": {"vllm": {"cpu_kv_cache_gb": 2}}}})
    assert "Did you mean 'cpu_kv_cache_gib'?" in message
    message = _problems(tmp_path / "3", {"teacher": {"generation": {"vllm": {"gpu_memory_utilization": 1.5}}}})
    assert "teacher.generation.vllm.gpu_memory_utilization: Input should be less than or equal to 1" in message
    assert VLLMSettings(cpu_threads_bind="0-1|2-3").cpu_threads_bind == "0-1|2-3"
    message = _problems(tmp_path / "bad", {"inference": {"generation": {"vllm": {"cpu_threads_bind": "both"}}}})
    assert "cpu_threads_bind" in message


def test_rows_that_share_a_cache_block_with_an_earlier_row_wait_for_the_second_wave():
    from fsku_kedro.generation.backends import sharing_waves

    head = list(range(100, 140))  # 40 tokens: one block of 32, not one of 64
    rows = [head + [1, 2], [7, 8, 9], head + [3], head + [1, 5], [7, 8]]
    # In token order: [7, 8], [7, 8, 9], head + [1, 2], head + [1, 5], head + [3]; one row per shared head goes first.
    assert sharing_waves(rows, 32) == ([4, 1, 0], [3, 2])
    assert sharing_waves(rows, 64) == ([4, 1, 0, 3, 2], [])


def _gptq_checkpoint(folder, g_idx, desc_act=True):
    import torch
    from safetensors.torch import save_file

    folder.mkdir()
    quantization = {"quant_method": "gptq", "bits": 4, "group_size": 4, "desc_act": desc_act, "static_groups": True}
    (folder / "config.json").write_text(json.dumps({"quantization_config": quantization}), encoding="utf-8")
    save_file({"model.layers.0.mlp.up_proj.g_idx": torch.tensor(g_idx, dtype=torch.int32),
               "model.layers.0.mlp.up_proj.qweight": torch.zeros((1, 8), dtype=torch.int32)},
              str(folder / "model.safetensors"))
    return str(folder)


def test_a_gptq_checkpoint_with_static_groups_in_column_order_is_served_as_desc_act_false(tmp_path):
    from fsku_kedro.generation.vllm_engine import gptq_overrides

    in_order = _gptq_checkpoint(tmp_path / "static", [0, 0, 0, 0, 1, 1, 1, 1])
    assert gptq_overrides(in_order)["quantization_config"]["desc_act"] is False
    assert engine_arguments(EngineSpec(in_order, "bfloat16", VLLMSettings()), on_gpu=False)["hf_overrides"] == \
        gptq_overrides(in_order)
    # Groups reordered with the columns (act order without static groups): vLLM cannot serve it as it is.
    assert gptq_overrides(_gptq_checkpoint(tmp_path / "reordered", [1, 0, 0, 1, 0, 1, 1, 0])) is None
    assert gptq_overrides(_gptq_checkpoint(tmp_path / "plain", [0, 0, 0, 0, 1, 1, 1, 1], desc_act=False)) is None
    assert gptq_overrides(str(tmp_path / "not_a_model")) is None


def test_the_cpu_engine_is_not_started_where_it_would_exhaust_memory(tiny_llama_dir):
    spec = EngineSpec(str(tiny_llama_dir), "float32", VLLMSettings(cpu_kv_cache_gib=2))
    weights = weights_gib(str(tiny_llama_dir))
    assert 0 < weights < 0.1
    assert memory_shortfall(spec, 5.0 + weights) is None and memory_shortfall(spec, None) is None
    refusal = memory_shortfall(spec, 4.0)
    assert refusal.startswith("4.0 GiB of memory is free and the engine needs about 5.0 GiB")
    assert "lower cpu_kv_cache_gib" in refusal
