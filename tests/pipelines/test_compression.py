"""The compression pipeline on a tiny student: variants, the served model and the report."""

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from safetensors import safe_open

from fsku_kedro.compression.calibration import calibration_texts
from fsku_kedro.datasets import ModelDirectoryDataset, QuantizedModelDataset, QuantizedModelsDataset
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer
from fsku_kedro.parameters.compression import (
    CalibrationSettings,
    CompressionReportSettings,
    CompressionSettings,
)
from fsku_kedro.parameters.generation import GenerationSettings
from fsku_kedro.parameters.inference import InferenceSettings
from fsku_kedro.pipelines.compression import create_pipeline
from fsku_kedro.pipelines.compression.nodes import build_calibration_set
from fsku_kedro.pipelines.response_generation.nodes import build_prompt_set
from tests.conftest import settings_params
from tests.pipelines.test_distillation import sample_labels
from tests.pipelines.test_response_generation import (
    NO_CHUNKS,
    PROMPT_SET,
    TEMPLATES,
    no_user_data,
    sample_questions,
)

CALIBRATION = CompressionSettings(calibration=CalibrationSettings(calibration_samples=6, prompt_share=0.5,
                                                                  held_out_share=0.3, held_out_chunks=4))


def _chunks(count=20):
    return pd.DataFrame({
        "doc_id": [f"doc{i % 4}" for i in range(count)],
        "title": [f"문서 {i % 4}" for i in range(count)],
        "content": [f"전자금융거래법 제{i}조는 금융회사의 안전성 확보 의무를 정한다. 접근매체 {i}번은 분실 즉시 신고한다."
                    for i in range(count)],
    })


def _prompts():
    return pd.DataFrame({"prompt": [f"질문 {i}" for i in range(6)], "split": ["train"] * 4 + ["validation"] * 2})


def test_calibration_and_held_out_text_never_overlap():
    sets = build_calibration_set(_chunks(), _prompts(), TEMPLATES, CALIBRATION)
    assert len(sets["calibration"]) == 3 and len(sets["prompts"]) == 3, "half the texts are training prompts"
    assert set(sets["prompts"]) < {"질문 0", "질문 1", "질문 2", "질문 3"}, "training prompts only"
    assert sets["held_out"] and not set(sets["held_out"]) & set(sets["calibration"])
    with pytest.raises(ValueError, match="no calibration text"):
        build_calibration_set(_chunks(0), _prompts().iloc[0:0], TEMPLATES, CALIBRATION)


def test_multiple_choice_prompts_are_made_from_calibration_chunks_in_the_inference_templates():
    settings = CompressionSettings(calibration=CalibrationSettings(
        calibration_samples=10, prompt_share=0.2, mc_prompt_share=0.4, held_out_share=0.3))
    sets = build_calibration_set(_chunks(), _prompts(), TEMPLATES, settings)
    mc = [p for p in sets["prompts"] if not p.startswith("질문")]
    assert len(mc) == 4 and len(sets["prompts"]) == 6 and len(sets["calibration"]) == 4
    closed, with_context = TEMPLATES["closed_book_multiple_choice"](), TEMPLATES["inference_multiple_choice"]()
    assert mc[0].startswith(closed.split("$question")[0]) and mc[1].startswith(with_context.split("$context")[0])
    held_out = " ".join(sets["held_out"])
    for prompt in mc:
        options = re.findall(r"^([1-4]) (.+)$", prompt, flags=re.MULTILINE)
        assert [n for n, _ in options] == ["1", "2", "3", "4"]
        assert all(text not in held_out for _, text in options), "no held-out chunk leaks into calibration"
    # Rendered through the model's chat template with the assistant turn opened; chunks stay plain.
    tokenizer = SimpleNamespace(chat_template="x", apply_chat_template=lambda chat, tokenize, add_generation_prompt:
                                f"<user>{chat[0]['content']}</user><assistant>")
    texts = calibration_texts(sets, tokenizer)
    assert texts[:4] == sets["calibration"] and texts[4] == f"<user>{sets['prompts'][0]}</user><assistant>"


@pytest.mark.slow
def test_pipeline_quantizes_serves_and_reports(tiny_llama_dir, tiny_embedder, tmp_path):
    student_store = ModelDirectoryDataset(str(tmp_path / "student"))
    student_store.save(ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny"))
    settings = CALIBRATION.model_copy(update={
        "methods": ["int8", "int8_dynamic"], "serve_method": "int8_dynamic",
        "report": CompressionReportSettings(level="full", max_tokens=64, speed_prompts=2,
                                            generation=GenerationSettings(batch_size=4, max_new_tokens=4)),
    })
    _, split = build_prompt_set(pd.DataFrame(columns=["qa_id"]), NO_CHUNKS, sample_questions(), no_user_data(),
                                TEMPLATES, PROMPT_SET)
    data = {
        "distilled_student@path": str(student_store.last_saved_path),
        "chunks": _chunks(),
        "prompt_set": _prompts(),
        "sample_questions": sample_questions(),
        "sample_labels": sample_labels(),
        "sample_split": split,
        "prompt_templates": TEMPLATES,
        "embedder": tiny_embedder,
        **settings_params("compression", settings),
        **settings_params("inference", InferenceSettings(batch_size=4, generation=GenerationSettings(max_new_tokens=4))),
    }
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in data.items()})
    catalog["quantized_students"] = QuantizedModelsDataset(str(tmp_path / "variants"))
    SequentialRunner().run(create_pipeline(), catalog)
    assert sorted(p.name for p in (tmp_path / "variants").iterdir()) == ["int8", "int8_dynamic"]
    assert catalog.load("compressed_student@model").name == "tiny-int8_dynamic"
    report = catalog.load("compression_report").set_index("method")
    assert list(report.index) == ["none", "int8", "int8_dynamic"]
    assert (report["size_mb"] > 0).all() and (report["peak_load_mib"] > 0).all(), "measured in a fresh process"
    assert (report["tokens_per_s"] > 0).all() and report["perplexity"].notna().all()
    assert report.loc["int8", "size_ratio"] < 1.0, "int8 weights are smaller than float32"
    assert abs(report.loc["int8", "perplexity_change"]) < 0.5
    metrics = catalog.load("compression_metrics")
    assert "int8.size_ratio" in metrics and "none.fsku_score" in metrics


def test_serve_method_none_serves_the_model_unquantized_and_quantizes_nothing(tiny_llama_dir, tiny_embedder, tmp_path):
    student_store = ModelDirectoryDataset(str(tmp_path / "student"))
    student_store.save(ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny"))
    settings = CALIBRATION.model_copy(update={"methods": [], "serve_method": "none", "dtype": "float32",
                                              "report": CompressionReportSettings(max_tokens=32)})
    _, split = build_prompt_set(pd.DataFrame(columns=["qa_id"]), NO_CHUNKS, sample_questions(), no_user_data(),
                                TEMPLATES, PROMPT_SET)
    data = {
        "distilled_student@path": str(student_store.last_saved_path),
        "chunks": _chunks(), "prompt_set": _prompts(), "sample_questions": sample_questions(),
        "sample_labels": sample_labels(), "sample_split": split, "prompt_templates": TEMPLATES,
        "embedder": tiny_embedder,
        **settings_params("compression", settings), **settings_params("inference", InferenceSettings()),
    }
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in data.items()})
    catalog["quantized_students"] = QuantizedModelsDataset(str(tmp_path / "variants"))
    catalog["compressed_student@model"] = QuantizedModelDataset(str(tmp_path / "served"))
    SequentialRunner().run(create_pipeline(), catalog)
    assert not list((tmp_path / "variants").iterdir()), "nothing quantized"
    served = catalog.load("compressed_student@model")
    assert served.name == "tiny" and getattr(served.model.config, "quantization_config", None) is None
    with safe_open(str(Path(served.path) / "model.safetensors"), framework="pt") as weights:
        assert weights.get_tensor("model.layers.0.mlp.up_proj.weight").dtype == torch.float32, "saved in dtype"
    assert list(catalog.load("compression_report")["method"]) == ["none"]


@pytest.mark.parametrize(("update", "problem"), [
    ({"methods": [], "serve_method": "gptq"}, "serve_method 'gptq' is not among methods []"),
    ({"methods": ["int8"], "serve_method": "fp8"}, "serve_method\n  Input should be 'none', 'gptq'"),
])
def test_a_served_variant_that_is_not_made_is_refused(update, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        CompressionSettings.model_validate({**CompressionSettings().model_dump(), **update})
