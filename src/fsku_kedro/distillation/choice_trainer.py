"""A ``choice_target`` round: the student learns the teacher's debiased option distribution.

A plain ``transformers.Trainer`` over (served prompt, option tokens, target distribution) rows. The
loss is KL(target || student) between the teacher's cyclic-averaged distribution over the options
and the student's softmax over the option-number tokens at the answer position, the quantity
choice scoring reads when it answers (answering/choice_scoring.py), in one pass.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from transformers import Trainer, TrainingArguments, set_seed

from fsku_kedro.distillation.choice_targets import single_token_options
from fsku_kedro.questions import parse_question, shuffled, shuffled_order

logger = logging.getLogger(__name__)


def sharpened(target: list[float], temperature: float) -> list[float]:
    """``target`` raised to the power 1 / temperature and renormalised (1.0: unchanged; below 1: sharper)."""
    if temperature == 1.0:
        return [float(p) for p in target]
    logs = [math.log(p) / temperature if p > 0 else -math.inf for p in target]
    top = max(logs)
    weights = [math.exp(value - top) for value in logs]
    return [w / sum(weights) for w in weights]


def labelled(target: list[float], answer: int, weight: float) -> list[float]:
    """``target`` mixed with the one-hot distribution of option ``answer`` (1-based): (1 - weight) *
    target + weight * one-hot; unchanged when ``answer`` is 0 (not known) or ``weight`` is 0."""
    if not answer or not weight:
        return target
    return [(1.0 - weight) * p + (weight if n == answer else 0.0) for n, p in enumerate(target, start=1)]


def reorderings(record: dict[str, Any], count: int) -> list[tuple[str, list[float]]]:
    """Up to ``count`` more views of a target row: its prompt with the options in other seeded orders
    (each different from the shown one and from each other, renumbered from 1) and its target
    carried along, so each option text keeps its probability."""
    question = parse_question(str(record["question_id"]), str(record["question"]))
    size = len(question.choices or {})
    seen, views, seed = {tuple(range(1, size + 1))}, [], 0
    while len(views) < min(count, math.factorial(size) - 1):
        seed += 1
        order = shuffled_order(question, seed)
        if tuple(order) in seen:
            continue
        seen.add(tuple(order))
        prompt = str(record["prompt"]).replace(str(record["question"]), shuffled(question, seed).Question, 1)
        views.append((prompt, [float(record["target"][original - 1]) for original in order]))
    return views


def choice_rows(targets: Any, tokenizer: Any, *, temperature: float, orders: int,
                label_weight: float) -> list[dict[str, Any]]:
    """Tokenised rows (served prompt ids, option tokens, target) of a choice-target frame, each
    question in its own option order and ``orders`` - 1 more seeded orders. The target is sharpened
    by ``temperature``, then ``labelled`` with the question's known answer at ``label_weight``.
    Questions whose option numbers take several tokens are left out and counted."""
    rows, skipped = [], 0
    for record in targets.to_dict("records"):
        options = single_token_options(tokenizer, int(record["option_count"]))
        if options is None:
            skipped += 1
            continue
        target = labelled(sharpened(list(record["target"]), temperature), int(record.get("answer") or 0),
                          label_weight)
        shown = [(str(record["prompt"]), target), *reorderings({**record, "target": target}, orders - 1)]
        for prompt, target in shown:
            chat = [{"role": "user", "content": prompt}]
            ids = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                            add_special_tokens=False)["input_ids"]
            rows.append({"input_ids": ids, "option_tokens": options, "target": target})
    if skipped:
        logger.warning("Choice targets: %d questions left out, their option numbers take several tokens", skipped)
    return rows


class ChoiceCollator:
    """Left-padded prompts (the answer position is the last column) and padded option rows."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(row["input_ids"]) for row in rows)
        width = max(len(row["option_tokens"]) for row in rows)
        batch = {
            "input_ids": torch.full((len(rows), length), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), length), dtype=torch.long),
            "option_tokens": torch.zeros((len(rows), width), dtype=torch.long),
            "option_mask": torch.zeros((len(rows), width), dtype=torch.bool),
            "target": torch.zeros((len(rows), width), dtype=torch.float32),
        }
        for i, row in enumerate(rows):
            ids, count = row["input_ids"], len(row["option_tokens"])
            batch["input_ids"][i, length - len(ids):] = torch.tensor(ids)
            batch["attention_mask"][i, length - len(ids):] = 1
            batch["option_tokens"][i, :count] = torch.tensor(row["option_tokens"])
            batch["option_mask"][i, :count] = True
            batch["target"][i, :count] = torch.tensor(row["target"])
        return batch


def choice_kl(logits: torch.Tensor, option_tokens: torch.Tensor, option_mask: torch.Tensor,
              target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(target || softmax of the option tokens' logits at the answer position)."""
    scores = logits.float().gather(1, option_tokens).masked_fill(~option_mask, float("-inf"))
    log_student = torch.log_softmax(scores, dim=-1)
    log_target = torch.log(target.clamp_min(1e-12))
    terms = torch.where(option_mask & (target > 0), target * (log_target - log_student), torch.zeros_like(target))
    return terms.sum(dim=-1).mean()


class ChoiceTargetTrainer(Trainer):
    """``Trainer`` whose loss is ``choice_kl`` on the student's logits at the last prompt position."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False,
                        logits_to_keep=1)
        loss = choice_kl(outputs.logits[:, -1], inputs["option_tokens"], inputs["option_mask"], inputs["target"])
        return (loss, outputs) if return_outputs else loss


def choice_trainer(model: Any, tokenizer: Any, targets: Any, arguments: dict[str, Any],
                   peft_config: Any, callbacks: list | None, *, temperature: float, orders: int,
                   label_weight: float) -> ChoiceTargetTrainer:
    """The trainer over the train split of ``targets`` in ``orders`` option orders per question
    (validation rows, in their own order, for its eval loss), each target read by ``choice_rows``
    (sharpened by ``temperature``, mixed with the known answer at ``label_weight``)."""
    from datasets import Dataset
    from peft import get_peft_model

    train = choice_rows(targets[targets["split"] == "train"], tokenizer, temperature=temperature, orders=orders,
                        label_weight=label_weight)
    if not train:
        raise ValueError("a choice_target round has no training question: the prompt set holds no multiple-choice "
                         "item and distillation.choice_targets.corpus_questions is 0")
    evaluation = choice_rows(targets[targets["split"] == "validation"], tokenizer, temperature=temperature,
                             orders=1, label_weight=label_weight)  # each question in its own order only
    if not evaluation:
        arguments = {**arguments, "eval_strategy": "no"}
    # The target is the label: with it named, evaluation computes the loss (eval_loss) and keeps no logits.
    arguments = {**arguments, "label_names": ["target"], "prediction_loss_only": True}
    # TrainingArguments ignores the TRL-only fields the other rounds share.
    fields = set(TrainingArguments.__dataclass_fields__)
    args = TrainingArguments(**{key: value for key, value in arguments.items() if key in fields})
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # The adapter's initial weights come from the seed, as a trainer given peft_config draws them: two
    # runs of the same round (a killed one resumed included) train the same adapter.
    set_seed(args.seed)
    return ChoiceTargetTrainer(
        model=get_peft_model(model, peft_config),
        args=args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(evaluation) if evaluation else None,
        data_collator=ChoiceCollator(pad),
        callbacks=callbacks,
    )
