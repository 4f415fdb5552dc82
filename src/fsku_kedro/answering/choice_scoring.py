"""Multiple-choice answering by choice scoring.

The model reads the prompt once and the log-probabilities of the option-number tokens at the
answer position (the first token the assistant would write) are compared, restricted to the
options the question has; their softmax gives the choice and its confidence. No text is generated.

An option number written with several tokens ("10" as "1" + "0" in tokenizers that split digits)
is scored as a sequence: log P("1") + log P("0" | "1"); and an option whose tokens begin another's
("1" before "10") also pays for stopping there: + log(1 − P("0" | "1")). Each such prefix costs
one more forward pass, so questions with at most nine options still take exactly one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from fsku_kedro.models.bundle import ModelBundle

Prefix = tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    number: int
    confidence: float
    probabilities: dict[int, float]


def option_token_sequences(tokenizer, count: int) -> list[Prefix]:
    """The tokens that write each option number 1..count."""
    sequences = [tuple(tokenizer.encode(str(number), add_special_tokens=False)) for number in range(1, count + 1)]
    if any(not sequence for sequence in sequences):
        raise ValueError("the tokenizer writes an option number with no tokens")
    return sequences


def needed_tokens(sequences: list[Prefix]) -> dict[Prefix, set[int]]:
    """For each prefix at which the model must be read, the next tokens whose probability is used."""
    needed: dict[Prefix, set[int]] = defaultdict(set)
    for sequence in sequences:
        for length in range(len(sequence)):
            needed[sequence[:length]].add(sequence[length])
    return dict(needed)


def sequence_scores(sequences: list[Prefix], log_probs: dict[Prefix, dict[int, float]]) -> list[float]:
    """log P(option written exactly): its tokens' log-probabilities plus, where its tokens are a
    prefix of another option's, the log-probability of not continuing with that option's next token."""
    scores = []
    for sequence in sequences:
        score = sum(log_probs[sequence[:j]][sequence[j]] for j in range(len(sequence)))
        continuing = log_probs.get(sequence, {})
        if continuing:
            rest = 1.0 - sum(math.exp(value) for value in continuing.values())
            score += math.log(max(rest, 1e-12))
        scores.append(score)
    return scores


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
    prompts = [
        tokenizer(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False)["input_ids"]
        for chat in chats
    ]
    sequences = [option_token_sequences(tokenizer, count) for count in option_counts]
    needs = [needed_tokens(s) for s in sequences]
    rows = [(i, prefix) for i, need in enumerate(needs) for prefix in need]
    rows.sort(key=lambda row: -(len(prompts[row[0]]) + len(row[1])))
    log_probs: list[dict[Prefix, dict[int, float]]] = [{} for _ in chats]
    device = next(model.parameters()).device
    model.eval()
    batches = range(0, len(rows), batch_size)
    for start in tqdm(batches, desc=f"choice scoring ({bundle.name})", disable=not show_progress):
        batch = rows[start : start + batch_size]
        encoded = tokenizer.pad(
            {"input_ids": [prompts[i] + list(prefix) for i, prefix in batch]}, padding=True,
            padding_side="left", return_tensors="pt",
        ).to(device)
        with torch.no_grad():
            logits = model(**encoded, use_cache=False, logits_to_keep=1).logits[:, -1].float()
        rows_log_probs = torch.log_softmax(logits, dim=-1)
        for row, (i, prefix) in enumerate(batch):
            tokens = sorted(needs[i][prefix])
            log_probs[i][prefix] = dict(zip(tokens, rows_log_probs[row, tokens].tolist()))
    results = []
    for i in range(len(chats)):
        scores = torch.tensor(sequence_scores(sequences[i], log_probs[i]), dtype=torch.float64)
        probs = torch.softmax(scores, dim=-1)
        best = int(probs.argmax())
        results.append(Choice(best + 1, float(probs[best]), {n + 1: float(p) for n, p in enumerate(probs)}))
    return results
