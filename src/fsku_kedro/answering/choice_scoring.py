"""Multiple-choice answering by choice scoring.

The model reads the prompt once and the log-probabilities of the option-number tokens at the
answer position (the first token the assistant would write) are compared, restricted to the
options the question has; their softmax gives the choice and its confidence. No text is generated.

An option number written with several tokens ("10" as "1" + "0" in tokenizers that split digits)
is scored as a sequence: log P("1") + log P("0" | "1"); and an option whose tokens begin another's
("1" before "10") also pays for stopping there: + log(1 − P("0" | "1")). Each such prefix costs
one more row, so questions with at most nine options still take exactly one.

On a CPU, where a forward pass costs about the same per token whatever the batch, rows that begin
with the same tokens share them: the rotations of one question (cyclic debiasing, the teacher's
choice targets) repeat everything up to the first option, about half of their tokens. Rows are
batched in token order, a row joining the open batch while that costs fewer token positions than
starting a new one; the shared prefix runs once, its key/value cache is repeated for the rows and
only their remainders run on it.

With ``engine`` (the vLLM backend, generation/backends.py) the same rows go to vLLM instead, which
reads the wanted tokens' log-probabilities at each row's end and shares common heads through its
prefix cache.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

import torch
from tqdm.auto import tqdm

from fsku_kedro.models.bundle import ModelBundle

Prefix = tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    number: int
    confidence: float
    probabilities: dict[int, float]


class NextTokenReader(Protocol):
    """An engine that reads, after each row of token ids, the log-probabilities of some next tokens."""

    def next_token_log_probs(self, token_rows: list[list[int]], wanted: list[list[int]],
                             show_progress: bool = False) -> list[list[float]]: ...


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


# Below this many shared tokens a batch runs as plain padded rows.
MIN_SHARED_TOKENS = 8


def _common_length(first: list[int], second: list[int]) -> int:
    length = 0
    for a, b in zip(first, second):
        if a != b:
            break
        length += 1
    return length


def row_batches(tokens: list[list[int]], batch_size: int, share_prefix: bool) -> list[tuple[list[int], int]]:
    """Batches of row indices and the number of leading tokens every row of the batch shares (0 when
    not shared). Without sharing: rows longest first, ``batch_size`` a batch. With it: rows in token
    order, each joining the open batch while the batch's cost (its shared prefix once, then every
    row padded to the longest remainder) grows by no more than the row's own length."""
    if not share_prefix:
        order = sorted(range(len(tokens)), key=lambda r: -len(tokens[r]))
        return [(order[start : start + batch_size], 0) for start in range(0, len(order), batch_size)]
    batches: list[tuple[list[int], int]] = []
    batch: list[int] = []
    shared = longest = 0
    for r in sorted(range(len(tokens)), key=lambda r: tokens[r]):
        length = len(tokens[r])
        if batch and len(batch) < batch_size:
            # Every row keeps at least its last token out of the prefix: that is where it is read.
            joined = min(shared, _common_length(tokens[batch[-1]], tokens[r]), length - 1)
            widest = max(longest, length)
            cost, joined_cost = shared + len(batch) * (longest - shared), joined + (len(batch) + 1) * (widest - joined)
            if joined_cost - cost <= length:
                batch.append(r)
                shared, longest = joined, widest
                continue
        if batch:
            batches.append((batch, shared))
        batch, shared, longest = [r], length - 1, length
    if batch:
        batches.append((batch, shared))
    return [(rows, shared if len(rows) > 1 and shared >= MIN_SHARED_TOKENS else 0) for rows, shared in batches]


def last_log_probs(model, sequences: list[list[int]], shared: int, pad: int, device) -> torch.Tensor:
    """Next-token log-probabilities after each token sequence ([rows, vocabulary], float32). The first
    ``shared`` tokens, the same in every sequence, run once and their cache serves every row."""
    cache = None
    if shared:
        with torch.no_grad():
            cache = model(input_ids=torch.tensor([sequences[0][:shared]], device=device), use_cache=True,
                          logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(sequences))
    tails = [sequence[shared:] for sequence in sequences]
    width = max(len(tail) for tail in tails)
    ids = torch.full((len(tails), width), pad, dtype=torch.long)
    mask = torch.zeros((len(tails), width), dtype=torch.long)
    for row, tail in enumerate(tails):  # left padding: every row ends at the last position
        ids[row, width - len(tail):] = torch.tensor(tail)
        mask[row, width - len(tail):] = 1
    inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if cache is not None:
        # The padding sits between the prefix and a row's remainder: positions skip it.
        inputs["attention_mask"] = torch.cat([torch.ones((len(tails), shared), dtype=torch.long), mask], 1).to(device)
        inputs["position_ids"] = (shared + (mask.cumsum(1) - 1).clamp(min=0)).to(device)
    with torch.no_grad():
        logits = model(**inputs, past_key_values=cache, use_cache=cache is not None, logits_to_keep=1).logits
    return torch.log_softmax(logits[:, -1].float(), dim=-1)


def score_choices(
    bundle: ModelBundle,
    chats: list[list[dict[str, str]]],
    option_counts: list[int],
    batch_size: int,
    show_progress: bool = False,
    share_prefix: bool | None = None,
    engine: NextTokenReader | None = None,
) -> list[Choice]:
    """The most likely option number for each chat, in input order. The bundle's model reads the rows
    in batches of ``batch_size`` (``share_prefix``, default on a CPU, runs the tokens a batch's rows
    begin with once), or ``engine`` reads them when given."""
    if len(chats) != len(option_counts):
        raise ValueError("one option count per chat is needed")
    tokenizer = bundle.tokenizer
    prompts = [
        tokenizer(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False)["input_ids"]
        for chat in chats
    ]
    sequences = [option_token_sequences(tokenizer, count) for count in option_counts]
    needs = [needed_tokens(s) for s in sequences]
    rows = [(i, prefix) for i, need in enumerate(needs) for prefix in need]
    tokens = [prompts[i] + list(prefix) for i, prefix in rows]
    wanted = [sorted(needs[i][prefix]) for i, prefix in rows]
    if engine is not None:
        read = engine.next_token_log_probs(tokens, wanted, show_progress)
    else:
        read = _model_log_probs(bundle, tokens, wanted, batch_size, show_progress, share_prefix)
    log_probs: list[dict[Prefix, dict[int, float]]] = [{} for _ in chats]
    for (i, prefix), needed, values in zip(rows, wanted, read):
        log_probs[i][prefix] = dict(zip(needed, values))
    results = []
    for i in range(len(chats)):
        scores = torch.tensor(sequence_scores(sequences[i], log_probs[i]), dtype=torch.float64)
        probs = torch.softmax(scores, dim=-1)
        best = int(probs.argmax())
        results.append(Choice(best + 1, float(probs[best]), {n + 1: float(p) for n, p in enumerate(probs)}))
    return results


def _model_log_probs(bundle: ModelBundle, tokens: list[list[int]], wanted: list[list[int]], batch_size: int,
                     show_progress: bool, share_prefix: bool | None) -> list[list[float]]:
    """``wanted`` next tokens' log-probabilities after each row, read by the bundle's transformers model."""
    model = bundle.model
    device = next(model.parameters()).device
    if share_prefix is None:
        share_prefix = device.type == "cpu"  # a GPU is faster on full batches than on shorter rows
    tokenizer = bundle.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    read: list[list[float]] = [[] for _ in tokens]
    for batch, shared in tqdm(row_batches(tokens, batch_size, share_prefix), desc=f"choice scoring ({bundle.name})",
                              disable=not show_progress):
        rows_log_probs = last_log_probs(model, [tokens[r] for r in batch], shared, pad, device)
        for row, r in enumerate(batch):
            read[r] = rows_log_probs[row, wanted[r]].tolist()
    return read
