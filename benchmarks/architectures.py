"""Real model architectures without their weights, for measuring memory and speed.

The ``config.json`` of each model the ``gpu`` environment uses is kept in
``benchmarks/architecture_configs/<name>.json``; the benchmarks and the tests read it from there.
A randomly initialised model built from it has the exact shapes of the real one, and speed and
memory do not depend on the weights' values. The real tokenizer files (7 MB) do not ship;
``stand_in_tokenizer`` has the same length, the same special-token ids and a ChatML template, so
vocabulary-sized tensors and sequence lengths are those of the real models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).parent / "architecture_configs"
ARCHITECTURES = {  # kept config -> the Hugging Face model it describes
    "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    "qwen2.5-1.5b-instruct": "Qwen/Qwen2.5-1.5B-Instruct",
}
# Qwen2.5's tokenizer: 151,643 byte-level BPE tokens, then 22 special tokens from id 151,643.
QWEN_BPE_TOKENS = 151_643
QWEN_SPECIAL_TOKENS = {"<|endoftext|>": 151_643, "<|im_start|>": 151_644, "<|im_end|>": 151_645}
QWEN_TOKENIZER_SIZE = 151_665
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def load_config(name: str) -> Any:
    """The transformers config of the kept architecture ``name`` (a key of ``ARCHITECTURES``)."""
    from transformers import AutoConfig

    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; kept: {', '.join(ARCHITECTURES)}")
    values = json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    return AutoConfig.for_model(**values)


def shrunken(config: Any, *, layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int) -> Any:
    """``config`` with fewer and narrower layers; vocabulary, tied head and everything else kept."""
    if hidden % heads or heads % kv_heads:
        raise ValueError(f"hidden {hidden} must divide into {heads} heads, and those into {kv_heads} KV heads")
    values = config.to_dict()
    values.update(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=intermediate,
                  num_attention_heads=heads, num_key_value_heads=kv_heads, max_window_layers=layers,
                  layer_types=None, head_dim=None)
    values = {key: value for key, value in values.items() if value is not None}
    return type(config).from_dict(values)


def random_model(config: Any, dtype: str = "float32", device: str = "cpu", seed: int = 0) -> Any:
    """A causal LM of ``config``'s shapes with random weights, built directly on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    return model.eval()


def stand_in_word(token_id: int) -> str:
    """The letters-only word of ``stand_in_tokenizer``'s token ``token_id`` (a, b, ..., z, aa, ab, ...)."""
    word = ""
    token_id += 1
    while token_id:
        token_id, rest = divmod(token_id - 1, 26)
        word = chr(ord("a") + rest) + word
    return word


def stand_in_tokenizer(size: int = QWEN_TOKENIZER_SIZE) -> Any:
    """A word-level tokenizer of ``size`` tokens with Qwen2.5's special-token ids and a ChatML template.

    Token ``i`` below 151,643 is the word ``stand_in_word(i)``; digits are split one per token (as
    Qwen2.5 does) and are the tokens of Qwen2.5's ids 15..24; anything else is token 0.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = {**QWEN_SPECIAL_TOKENS}
    for token_id in range(QWEN_BPE_TOKENS, size):
        if token_id not in specials.values():
            specials[f"<|reserved_{token_id}|>"] = token_id
    vocab = {stand_in_word(i): i for i in range(QWEN_BPE_TOKENS)}
    for digit in range(10):
        del vocab[stand_in_word(15 + digit)]
        vocab[str(digit)] = 15 + digit
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=stand_in_word(0)))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.add_special_tokens(sorted(specials, key=specials.get))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                      bos_token=None)
    wrapped.chat_template = CHATML_TEMPLATE
    if len(wrapped) != size or wrapped.convert_tokens_to_ids("<|im_end|>") != QWEN_SPECIAL_TOKENS["<|im_end|>"]:
        raise AssertionError("the stand-in tokenizer's ids drifted from Qwen2.5's")
    return wrapped
