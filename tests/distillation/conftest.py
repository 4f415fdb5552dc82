"""Tiny teacher / student pairs over the tiny tokenizer."""

import pytest
import torch
from datasets import Dataset, DatasetDict

from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer
from fsku_kedro.parameters.distillation import (
    DistillationSettings,
    DistillMSettings,
    LoraSettings,
    TrainingSettings,
)


def tiny_bundle(directory, name, noise=0.0, seed=0):
    # float32 on every CPU: the tests compare batched and direct passes closely, which bfloat16's
    # rounding (auto on a CPU with native bfloat16) would not meet
    model = load_causal_lm(str(directory), dtype="float32")
    if noise:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(noise * torch.randn(parameter.shape, generator=generator))
    return ModelBundle(model, load_tokenizer(str(directory)), name, str(directory))


@pytest.fixture
def teacher(tiny_llama_dir):
    return tiny_bundle(tiny_llama_dir, "tiny-teacher", noise=0.5, seed=1)


@pytest.fixture
def student(tiny_llama_dir):
    return tiny_bundle(tiny_llama_dir, "tiny-student")


def pair_rows(count):
    return [
        {
            "prompt": [{"role": "user", "content": f"전자금융거래법 제{i}조의 내용은?"}],
            "chosen": [{"role": "assistant", "content": "금융회사는 이용자에게 2주 이내에 처리 결과를 알려야 한다."}],
            "rejected": [{"role": "assistant", "content": "잘 모르겠습니다."}],
        }
        for i in range(count)
    ]


@pytest.fixture
def fixed_pairs():
    """Two pairs: with a batch of two, every step sees the same batch."""
    return DatasetDict({"train": Dataset.from_list(pair_rows(2))})


def training_parameters(distillm: dict | None = None, **training) -> DistillationSettings:
    """Distillation settings for a few quick steps on the tiny models; ``training`` overrides trainer fields."""
    return DistillationSettings(
        teacher_signal_dir=None,  # the teacher runs every step; tests of the cache set a folder
        lora=LoraSettings(r=4, alpha=8, target_modules="all-linear"),
        distillm=DistillMSettings(loss_chunk_size=16, **(distillm or {})),
        training=TrainingSettings(**{
            "max_steps": 3,
            "per_device_train_batch_size": 2,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "save_steps": 100,
            "disable_tqdm": True,
            "bf16": False,  # float32 steps on every CPU, as the models are (tiny_bundle)
            **training,
        }),
    )
