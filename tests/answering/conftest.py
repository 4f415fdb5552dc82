"""A tiny model whose tokenizer writes every digit as its own token (as SmolLM2 and Qwen2.5 do),
so option "10" is two tokens and starts with option "1"'s token."""

from pathlib import Path

import pytest

from tests.conftest import CHAT_TEMPLATE, corpus_texts


@pytest.fixture(scope="session")
def digit_llama_dir(tmp_path_factory) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus_texts(), trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<pad>",
                                      bos_token="<|endoftext|>")
    wrapped.chat_template = CHAT_TEMPLATE
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(wrapped), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         pad_token_id=wrapped.pad_token_id, eos_token_id=wrapped.eos_token_id)
    directory = tmp_path_factory.mktemp("digit_llama")
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    wrapped.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def digit_bundle(digit_llama_dir):
    """The digit Llama in float32 on every CPU: its tests compare scoring paths to 1e-5, which bfloat16
    (the 'auto' dtype where the CPU has it) does not hold."""
    from fsku_kedro.models.bundle import ModelBundle
    from fsku_kedro.models.sources import load_causal_lm, load_tokenizer

    model = load_causal_lm(str(digit_llama_dir), dtype="float32")
    return ModelBundle(model, load_tokenizer(str(digit_llama_dir)), "digit-llama", str(digit_llama_dir))


@pytest.fixture(scope="module")
def bundle(tiny_llama_dir):
    """The tiny Llama of the suite as a model bundle."""
    from fsku_kedro.models.bundle import ModelBundle
    from fsku_kedro.models.sources import load_causal_lm, load_tokenizer

    return ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny",
                       str(tiny_llama_dir))
