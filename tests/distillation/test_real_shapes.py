"""The gpu environment's models at their real vocabulary, on CPU: the Qwen2.5 configs the benchmarks
keep (benchmarks/architectures.py), shrunken to two narrow layers, run one DistiLLM-2 step and one
choice-scoring batch through the project's own trainer and scorer (benchmarks/gpu_scale.py measures
the full sizes on a GPU)."""

import pytest
import torch
from datasets import Dataset, DatasetDict

from fsku_kedro.answering.choice_scoring import score_choices
from fsku_kedro.distillation.training import build_trainer
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.distillation import DistillMSettings
from tests.conftest import PROJECT_ROOT, benchmark_script
from tests.distillation.conftest import training_parameters


@pytest.fixture(scope="module")
def architectures():
    yield from benchmark_script("architectures")


def test_kept_configs_are_the_published_models(architectures):
    from transformers import AutoModelForCausalLM

    expected = {  # parameters, head rows, tied head
        "qwen2.5-7b-instruct": (7_615_616_512, 152_064, False),
        "qwen2.5-1.5b-instruct": (1_543_714_304, 151_936, True),
    }
    for name, (parameters, rows, tied) in expected.items():
        config = architectures.load_config(name)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        assert sum(p.numel() for p in model.parameters()) == parameters, name
        assert model.get_output_embeddings().weight.shape[0] == rows
        assert config.tie_word_embeddings is tied
    with pytest.raises(ValueError, match="kept: qwen2.5-7b-instruct"):
        architectures.load_config("qwen2.5-72b")


@pytest.fixture(scope="module")
def real_vocabulary_pair(architectures):
    a = architectures
    tokenizer = a.stand_in_tokenizer()
    teacher = a.random_model(a.shrunken(a.load_config("qwen2.5-7b-instruct"), layers=2, hidden=96, intermediate=192,
                                        heads=6, kv_heads=2), seed=1)
    student = a.random_model(a.shrunken(a.load_config("qwen2.5-1.5b-instruct"), layers=2, hidden=64,
                                        intermediate=128, heads=4, kv_heads=2), seed=2)
    return (ModelBundle(teacher, tokenizer, "qwen2.5-7b-shrunken"),
            ModelBundle(student, tokenizer, "qwen2.5-1.5b-shrunken"))


def _text(architectures, seed: int, words: int) -> str:
    g = torch.Generator().manual_seed(seed)
    return " ".join(architectures.stand_in_word(int(i)) for i in torch.randint(30, 150_000, (words,), generator=g))


@pytest.mark.slow
def test_one_distillm_v2_step_over_the_real_vocabulary(architectures, real_vocabulary_pair, tmp_path):
    teacher, student = real_vocabulary_pair
    assert teacher.model.get_output_embeddings().weight.shape[0] == 152_064
    assert student.model.get_output_embeddings().weight.shape[0] == 151_936
    rows = [{"prompt": [{"role": "user", "content": _text(architectures, i, 20)}],
             "chosen": [{"role": "assistant", "content": _text(architectures, 100 + i, 16)}],
             "rejected": [{"role": "assistant", "content": _text(architectures, 200 + i, 12)}]} for i in range(2)]
    settings = training_parameters(max_steps=1)
    trainer = build_trainer("distillm_v2", student, teacher, DatasetDict({"train": Dataset.from_list(rows)}),
                            settings, tmp_path)
    assert trainer.vocab_size == architectures.QWEN_TOKENIZER_SIZE, "both heads are scored over the tokenizer's 151,665 rows"
    lora = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    losses = [record["loss"] for record in trainer.state.log_history if "loss" in record]
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses[0])) and losses[0] > 0
    changed = [name for name, p in trainer.model.named_parameters() if p.requires_grad
               and not torch.equal(p.detach(), lora[name])]
    assert changed, "the step updated the LoRA weights"


def test_one_choice_scoring_batch_over_the_real_vocabulary(architectures, real_vocabulary_pair):
    _, student = real_vocabulary_pair
    tokenizer, model = student.tokenizer, student.model
    chats = [[{"role": "user", "content": _text(architectures, 300 + i, 40 + 7 * i)}] for i in range(4)]
    choices = score_choices(student, chats, [4, 4, 5, 4], batch_size=4)
    for chat, count, choice in zip(chats, [4, 4, 5, 4], choices):
        ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        assert logits.shape[0] == 151_936
        option_ids = [tokenizer.convert_tokens_to_ids(str(n)) for n in range(1, count + 1)]
        expected = torch.softmax(torch.log_softmax(logits.double(), -1)[option_ids], -1)
        assert choice.number == int(expected.argmax()) + 1
        torch.testing.assert_close(torch.tensor([choice.probabilities[n] for n in range(1, count + 1)],
                                                dtype=torch.float64), expected, rtol=1e-4, atol=1e-6)


def test_the_gpu_benchmark_imports_no_settings_kedro_or_trl():
    """benchmarks/gpu_scale.py runs from a source tree on a machine that has torch, transformers and
    peft only: the project modules it imports must not pull pydantic, Kedro, TRL or MLflow."""
    import subprocess
    import sys

    modules = ["architectures", "fsku_kedro.distillation.heads", "fsku_kedro.distillation.losses",
               "fsku_kedro.answering.choice_scoring", "fsku_kedro.generation.backends", "fsku_kedro.models.bundle"]
    probe = (f"import sys\nsys.path.insert(0, {str(PROJECT_ROOT / 'benchmarks')!r})\n"
             f"for m in {modules!r}: __import__(m)\n"
             "print(sorted({n.split('.')[0] for n in sys.modules} & {'pydantic', 'kedro', 'trl', 'mlflow'}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


@pytest.fixture(scope="module")
def gpu_scale():
    yield from benchmark_script("gpu_scale")


def test_the_gpu_benchmark_loss_settings_are_the_settings_defaults(gpu_scale):
    """benchmarks/gpu_scale.py cannot read ``DistillMSettings`` (no pydantic there): its written-out
    DistiLLM-2 values must be the settings' defaults."""
    defaults = DistillMSettings().model_dump(include={"alpha_teacher", "alpha_student", "beta", "jsd_lambda"})
    assert gpu_scale.DISTILLM_V2 == {"loss_type": "distillm_v2", **defaults}
