"""Multiple-choice answering by choice scoring.

One forward pass per prompt: the logits at the answer position (the first token the assistant
would write) are read for the option-number tokens, restricted to the options the question has;
the softmax over those logits gives the choice and its confidence. No text is generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from fsku_kedro.models.bundle import ModelBundle


@dataclass(frozen=True)
class Choice:
    number: int
    confidence: float
    probabilities: dict[int, float]


def option_token_ids(tokenizer, count: int) -> list[int]:
    """The single token that writes each option number 1..count."""
    ids = []
    for number in range(1, count + 1):
        pieces = tokenizer.encode(str(number), add_special_tokens=False)
        if len(pieces) != 1:
            raise ValueError(
                f"option number {number} is {len(pieces)} tokens in this tokenizer; choice scoring reads one token "
                "per option (use generation with answer extraction for such questions)"
            )
        ids.append(pieces[0])
    return ids


def score_choices(
    bundle: ModelBundle,
    chats: list[list[dict[str, str]]],
    option_counts: list[int],
    batch_size: int = 8,
    show_progress: bool = False,
) -> list[Choice]:
    """The most likely option number for each chat, in input order."""
    if len(chats) != len(option_counts):
        raise ValueError("one option count per chat is needed")
    tokenizer, model = bundle.tokenizer, bundle.model
    texts = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    results: dict[int, Choice] = {}
    device = next(model.parameters()).device
    model.eval()
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc=f"choice scoring ({bundle.name})", disable=not show_progress):
        index = order[start : start + batch_size]
        encoded = tokenizer(
            [texts[i] for i in index], return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        ).to(device)
        with torch.no_grad():
            logits = model(**encoded, use_cache=False, logits_to_keep=1).logits[:, -1].float()
        for row, i in enumerate(index):
            ids = option_token_ids(tokenizer, option_counts[i])
            probs = torch.softmax(logits[row, ids], dim=-1)
            best = int(probs.argmax())
            results[i] = Choice(
                number=best + 1,
                confidence=float(probs[best]),
                probabilities={n + 1: float(p) for n, p in enumerate(probs)},
            )
    return [results[i] for i in range(len(chats))]
