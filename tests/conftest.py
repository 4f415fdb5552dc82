"""Shared fixtures: the project's embedded data and tiny real models built from configs.

Every model here is a few hundred kilobytes: tokenizers are trained on the project's corpus,
weights are randomly initialised from small configs, and everything is saved in the same
formats the real models use (Hugging Face directories with safetensors).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = PROJECT_ROOT / "data" / "01_raw" / "corpus"
SAMPLE_DIR = PROJECT_ROOT / "data" / "01_raw" / "sample"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def benchmark_script(name: str) -> Iterator:
    """The script ``benchmarks/<name>.py`` as a module (its sibling ``report`` importable), for a
    module-scoped fixture to yield."""
    folder = str(PROJECT_ROOT / "benchmarks")
    sys.path.insert(0, folder)
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(folder)


def settings_params(name: str, settings) -> dict:
    """``params:`` catalog entries for a settings object, nested blocks included, as Kedro makes them
    from validated parameters (``params:retrieval``, ``params:retrieval.weights``, ...)."""
    from pydantic import BaseModel

    entries = {f"params:{name}": settings}
    if isinstance(settings, BaseModel):
        for field in type(settings).model_fields:
            entries |= settings_params(f"{name}.{field}", getattr(settings, field))
    return entries


def sample_set():
    """The embedded sample questions and labels, loaded through their catalog datasets."""
    from fsku_kedro.datasets import LabelsDataset, QuestionsDataset

    return (QuestionsDataset(str(SAMPLE_DIR / "test.csv")).load(),
            LabelsDataset(str(SAMPLE_DIR / "labels.csv")).load())


def corpus_texts() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted(CORPUS_DIR.glob("*")) if p.suffix in {".md", ".txt"}]
    texts += [p.read_text(encoding="utf-8") for p in sorted((PROJECT_ROOT / "data/01_raw/pdf_sources").glob("*.md"))]
    return texts


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer (600 tokens) trained on the corpus, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus_texts(), trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<pad>", bos_token="<|endoftext|>"
    )
    wrapped.chat_template = CHAT_TEMPLATE
    directory = tmp_path_factory.mktemp("tiny_tokenizer")
    wrapped.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    from fsku_kedro.models.sources import load_tokenizer

    return load_tokenizer(str(tiny_tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_llama_dir(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """A 4-layer Llama with hidden size 64 over the tiny tokenizer, saved as safetensors.

    Its projections (64, 128 and 32 rows; 64 and 128 inputs) fit every quantization path, including
    bitsandbytes' packed CPU 4-bit format (rows in blocks of 32, inputs in blocks of 64)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from fsku_kedro.models.sources import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_tokenizer_dir))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    directory = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_awq_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    """The tiny Llama with as many KV heads as heads, so every projection has a multiple of 64 rows
    (GPTQModel's AWQ clipping search needs them)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from fsku_kedro.models.sources import load_tokenizer

    config = AutoConfig.from_pretrained(tiny_llama_dir)
    config.num_key_value_heads = config.num_attention_heads
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_awq")
    AutoModelForCausalLM.from_config(config).save_pretrained(directory, safe_serialization=True)
    load_tokenizer(str(tiny_llama_dir)).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT (hidden 32) with a WordPiece vocabulary trained on the corpus."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny_bert")
    wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    wordpiece.train_from_iterator(corpus_texts(), vocab_size=1500)
    wordpiece.save_model(str(directory))
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=False, strip_accents=False)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_embedder_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    """A sentence-transformers model (tiny BERT + mean pooling) saved like a real one."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformer = Transformer(str(tiny_bert_dir), max_seq_length=256)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    directory = tmp_path_factory.mktemp("tiny_embedder")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_embedder(tiny_embedder_dir):
    from fsku_kedro.datasets import SentenceEmbedderDataset

    return SentenceEmbedderDataset(source=str(tiny_embedder_dir)).load()


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    """A tiny BERT sequence classifier (one logit) usable as a CrossEncoder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(1)
    config = BertConfig.from_pretrained(tiny_bert_dir, num_labels=1)
    directory = tmp_path_factory.mktemp("tiny_cross_encoder")
    BertForSequenceClassification(config).save_pretrained(directory, safe_serialization=True)
    BertTokenizerFast.from_pretrained(tiny_bert_dir).save_pretrained(directory)
    return directory
