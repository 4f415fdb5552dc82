"""The free-disk check before a directory dataset writes: the estimate of a model's bytes, a refusal on a
nearly full disk (simulated) that says what to do, and an ordinary save."""

import shutil
from collections import namedtuple

import pytest
import torch
from kedro.io.core import DatasetError, Version

from fsku_kedro.datasets import LoraAdapterDataset, ModelDirectoryDataset, disk_space
from fsku_kedro.datasets.disk_space import (
    FREE_SPACE_MARGIN_BYTES,
    TOKENIZER_SLACK_BYTES,
    check_free_space,
    estimated_bytes,
    nearest_existing,
)
from fsku_kedro.errors import DiskSpaceError
from fsku_kedro.log_setup import user_error_in
from fsku_kedro.models import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer

Usage = namedtuple("Usage", "total used free")


@pytest.fixture(scope="module")
def bundle(tiny_llama_dir):
    return ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny")


def _nearly_full(monkeypatch, under, free):
    """``shutil.disk_usage`` as the disk check sees it: ``free`` bytes left for paths under ``under``."""
    real = shutil.disk_usage

    def usage(path):
        return Usage(10**12, 10**12 - free, free) if str(path).startswith(str(under)) else real(path)

    monkeypatch.setattr(disk_space.shutil, "disk_usage", usage)


@pytest.mark.slow
def test_a_model_bundle_is_estimated_at_what_its_save_writes_plus_tokenizer_slack(bundle, tmp_path):
    estimate = estimated_bytes(bundle)
    dataset = ModelDirectoryDataset(filepath=str(tmp_path / "student"), version=Version(None, None))
    dataset.save(bundle)
    written = (dataset.last_saved_path / "model.safetensors").stat().st_size
    weights = estimate - TOKENIZER_SLACK_BYTES
    assert 0.9 * written < weights < 1.1 * written, "parameters in the bundle's dtype, tied weights once"
    assert estimated_bytes({"gptq": bundle, "int8": bundle}) == 2 * estimate


def test_adapters_are_estimated_by_their_weights_and_unknown_data_not_at_all():
    class Adapter:
        weights = {"a": torch.zeros(4, 8, dtype=torch.bfloat16), "b": torch.zeros(8, dtype=torch.float32)}

    assert estimated_bytes(Adapter()) == 4 * 8 * 2 + 8 * 4
    assert estimated_bytes(object()) is None and estimated_bytes({}) is None
    assert estimated_bytes({"train": Adapter(), "other": object()}) is None, "one unknown part: no estimate"


@pytest.mark.slow
def test_a_save_on_a_nearly_full_disk_names_path_needed_free_and_the_fix(bundle, tmp_path, monkeypatch):
    _nearly_full(monkeypatch, tmp_path, free=FREE_SPACE_MARGIN_BYTES)
    dataset = ModelDirectoryDataset(filepath=str(tmp_path / "06_models/student"), version=Version(None, None))
    with pytest.raises(DatasetError) as raised:
        dataset.save(bundle)
    error = user_error_in(raised.value)
    assert isinstance(error, DiskSpaceError), "shown on screen as a plain message, like a settings error"
    message = str(error)
    needed = estimated_bytes(bundle)
    assert str(tmp_path / "06_models" / "student") in message
    assert f"{needed:,} bytes" in message and f"{FREE_SPACE_MARGIN_BYTES:,} bytes" in message
    assert f"are free on {tmp_path}" in message, "the nearest folder that exists is the one measured"
    assert "python -m fsku_kedro.versions" in message
    assert not (tmp_path / "06_models").exists(), "nothing was written"


@pytest.mark.slow
def test_a_save_with_room_writes_and_loads_back(bundle, tmp_path, monkeypatch):
    _nearly_full(monkeypatch, tmp_path, free=estimated_bytes(bundle) + FREE_SPACE_MARGIN_BYTES)
    dataset = ModelDirectoryDataset(filepath=str(tmp_path / "student"), version=Version(None, None))
    dataset.save(bundle)
    assert len(list((tmp_path / "student").glob("*/student/model.safetensors"))) == 1
    loaded = ModelDirectoryDataset(filepath=str(tmp_path / "student"), version=Version(None, None)).load()
    assert loaded.name == "tiny"
    monkeypatch.undo()  # the real disk
    ModelDirectoryDataset(filepath=str(tmp_path / "again"), version=Version(None, None)).save(bundle)
    assert dataset.last_saved_path.is_dir()


def test_an_adapter_is_checked_too_and_data_without_an_estimate_is_not(tmp_path, monkeypatch):
    _nearly_full(monkeypatch, tmp_path, free=0)

    class Adapter:
        weights = {"lora_A": torch.zeros(2, 2)}

    with pytest.raises(DatasetError, match="not enough disk space"):
        LoraAdapterDataset(filepath=str(tmp_path / "adapter"), version=Version(None, None)).save(Adapter())
    check_free_space(tmp_path / "anything", None)  # no estimate: no check
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path
