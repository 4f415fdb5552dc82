"""The compression pipeline on a tiny student: variants, the served model and the report."""

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from fsku_kedro.datasets import ModelDirectoryDataset, QuantizedModelsDataset
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer
from fsku_kedro.pipelines.compression import create_pipeline
from fsku_kedro.pipelines.compression.nodes import build_calibration_set
from tests.pipelines.test_distillation import sample_labels
from tests.pipelines.test_response_generation import PROMPT_SET, TEMPLATES, sample_questions

CALIBRATION = {"calibration_samples": 6, "prompt_share": 0.5, "held_out_share": 0.3, "held_out_chunks": 4, "seed": 0}


def _chunks(count=20):
    return pd.DataFrame({"content": [f"전자금융거래법 제{i}조는 금융회사의 안전성 확보 의무를 정한다." for i in range(count)]})


def _prompts():
    return pd.DataFrame({"prompt": [f"질문 {i}" for i in range(6)], "split": ["train"] * 4 + ["validation"] * 2})


def test_calibration_and_held_out_text_never_overlap():
    sets = build_calibration_set(_chunks(), _prompts(), CALIBRATION)
    assert len(sets["calibration"]) == 6 and sum(t.startswith("질문") for t in sets["calibration"]) == 3
    assert sets["held_out"] and not set(sets["held_out"]) & set(sets["calibration"])
    assert not {"질문 4", "질문 5"} & set(sets["calibration"]), "validation prompts are not calibration text"
    with pytest.raises(ValueError, match="no calibration text"):
        build_calibration_set(_chunks(0), _prompts().iloc[0:0], CALIBRATION)


@pytest.mark.slow
def test_pipeline_quantizes_serves_and_reports(tiny_llama_dir, tiny_embedder, tmp_path):
    student_store = ModelDirectoryDataset(str(tmp_path / "student"))
    student_store.save(ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny"))
    generation = {"backend": "transformers", "batch_size": 4, "max_new_tokens": 4, "do_sample": False,
                  "cache_implementation": None}
    parameters = {
        "methods": ["int8", "int8_dynamic"], "serve_method": "int8_dynamic", "source_dir": None,
        "report": {"max_tokens": 64, "speed_prompts": 2, "batch_size": 8, "generation": generation},
    }
    data = {
        "distilled_student": student_store.load(),
        "chunks": _chunks(),
        "prompt_set": _prompts(),
        "sample_questions": sample_questions(),
        "sample_labels": sample_labels(),
        "prompt_templates": TEMPLATES,
        "embedder": tiny_embedder,
        "params:compression": parameters,
        "params:compression.calibration": CALIBRATION,
        "params:response_generation.prompt_set": PROMPT_SET,
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
