"""DistiLLM-2 on TRL: the DPO trainer's data path with a distillation loss.

``DistillationTrainer`` keeps everything of ``trl.DPOTrainer`` (tokenisation of conversational
prompt/chosen/rejected pairs, the preference collator, PEFT, checkpointing, logging) and
overrides only ``compute_loss``: the teacher, passed as ``ref_model``, supplies full next-token
distributions instead of reference log-probabilities.
"""

from __future__ import annotations

import logging
import textwrap
from contextlib import ExitStack
from typing import Any

import torch
from trl import DPOTrainer

from fsku_kedro.distillation.config import DistillationConfig
from fsku_kedro.distillation.heads import final_hidden_states, head_rows, head_weight
from fsku_kedro.distillation.losses import (
    distillation_loss,
    needs_teacher,
    scores_rejected,
    sequence_log_prob_gap,
)
from fsku_kedro.distillation.schedules import AdaptiveAlpha, gradual_beta
from fsku_kedro.distillation.teacher_signal import TeacherSignalStore

logger = logging.getLogger(__name__)


class TokenizerMismatchError(ValueError):
    """Teacher and student do not share a tokenizer, so their distributions cannot be compared."""


def shared_vocabulary(teacher_tokenizer: Any, student_tokenizer: Any, teacher_rows: int, student_rows: int) -> int:
    """The vocabulary both LM heads are scored over.

    Heads may carry padding rows beyond the tokenizer (Qwen2.5-7B has 152,064 rows, the small
    Qwen2.5 models 151,936, for a 151,665-token tokenizer): both are sliced to the tokenizer's
    length. Different tokenizers are refused.
    """
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise TokenizerMismatchError(
            "teacher and student tokenizers differ "
            f"({len(teacher_tokenizer)} vs {len(student_tokenizer)} tokens): token-level distillation needs one "
            "shared tokenizer; pick a teacher and student of the same model family"
        )
    vocab = len(student_tokenizer)
    if min(teacher_rows, student_rows) < vocab:
        raise TokenizerMismatchError(
            f"an LM head is smaller than the tokenizer: teacher {teacher_rows}, student {student_rows} rows, "
            f"tokenizer {vocab} tokens"
        )
    return vocab


class DistillationTrainer(DPOTrainer):
    """Contrastive distillation (DistiLLM-2 and the token-level baselines) over preference pairs.

    Chosen responses are the teacher's, rejected ones the student's, for the same prompt.
    """

    _tag_names = ["trl", "distillation", "distillm-2"]
    _name = "DistiLLM-2"
    _paper = {
        "title": "DistiLLM-2: A Contrastive Approach Boosts the Distillation of LLMs",
        "id": "2503.07067",
        "citation": textwrap.dedent("""\
            @inproceedings{ko2025distillm2,
                title     = {{DistiLLM-2: A Contrastive Approach Boosts the Distillation of LLMs}},
                author    = {Jongwoo Ko and Tianyi Chen and Sungnyun Kim and Tianyu Ding and Luming Liang and
                             Ilya Zharkov and Se-Young Yun},
                booktitle = {Forty-second International Conference on Machine Learning},
                year      = 2025,
                eprint    = {arXiv:2503.07067}
            }"""),
    }

    def __init__(self, model: Any, ref_model: Any, args: DistillationConfig, **kwargs: Any):
        if ref_model is None:
            # DPOTrainer would silently copy the student as its reference: distilling from itself.
            raise ValueError("DistillationTrainer needs the teacher as ref_model; got None")
        if not isinstance(args, DistillationConfig):
            raise TypeError(f"args must be a DistillationConfig, got {type(args).__name__}")
        processing_class = kwargs.get("processing_class")
        if processing_class is None:
            raise ValueError("DistillationTrainer needs the student's tokenizer as processing_class")
        teacher_tokenizer = kwargs.pop("teacher_tokenizer", processing_class)
        self.teacher_signal: TeacherSignalStore | None = kwargs.pop("teacher_signal", None)
        self.vocab_size = shared_vocabulary(
            teacher_tokenizer,
            processing_class,
            head_rows(ref_model),
            head_rows(model),
        )
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if args.adaptive_alpha and args.distillation_loss == "distillm_v2":
            callbacks += [
                AdaptiveAlpha("chosen", args.alpha_teacher, args.alpha_anchor_steps, args.min_alpha),
                AdaptiveAlpha("rejected", args.alpha_student, args.alpha_anchor_steps, args.min_alpha),
            ]
        super().__init__(model=model, ref_model=ref_model, args=args, callbacks=callbacks, **kwargs)

    def train(self, *args: Any, **kwargs: Any):
        try:
            return super().train(*args, **kwargs)
        finally:
            if self.teacher_signal is not None:
                self.teacher_signal.flush()
                logger.info("Teacher signal: %d rows read from the cache, %d computed", self.teacher_signal.hits,
                            self.teacher_signal.misses)

    def _teacher_hidden(self, input_ids, attention_mask, mask) -> torch.Tensor:
        """The teacher's final hidden states ``[B, T-1, H]``: from the teacher-signal cache where one is
        set (valid at the response positions ``mask``, which are all the loss reads), else a forward."""
        def forward(ids, attention):
            return final_hidden_states(self.ref_model, ids, attention)[:, :-1]

        if self.teacher_signal is None:
            return forward(input_ids, attention_mask)
        return self.teacher_signal.hidden_states(forward, input_ids, attention_mask, mask)

    def _alpha_schedule(self, side: str) -> AdaptiveAlpha | None:
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, AdaptiveAlpha) and callback.side == side:
                return callback
        return None

    def _alphas(
        self, student_hidden, student_head, teacher_hidden, teacher_head, labels, mask
    ) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        """Per-pair alphas under the adaptive schedule, else the configured constants."""
        args: DistillationConfig = self.args
        chosen, rejected = self._alpha_schedule("chosen"), self._alpha_schedule("rejected")
        if chosen is None or rejected is None:
            return args.alpha_teacher, args.alpha_student
        with torch.no_grad():  # a first pass for the sentence-level log-probabilities
            probe = distillation_loss(
                student_hidden.detach(),
                student_head.detach(),
                teacher_hidden,
                teacher_head,
                labels,
                mask,
                loss_type="kd",  # reads neither alpha, beta nor jsd_lambda
                alpha_teacher=args.alpha_teacher,
                alpha_student=args.alpha_student,
                beta=args.beta,
                jsd_lambda=args.jsd_lambda,
                chunk_size=args.loss_chunk_size,
                vocab_size=self.vocab_size,
            )
        pairs = labels.shape[0] // 2
        gap = sequence_log_prob_gap(probe.teacher_logps, probe.student_logps)
        # chosen: how much likelier the teacher finds its own response; rejected: the converse
        return chosen.alphas(gap[:pairs]), rejected.alphas(-gap[pairs:])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args: DistillationConfig = self.args
        mode = "train" if self.model.training else "eval"
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        labels = input_ids[:, 1:]
        mask = inputs["completion_mask"][:, 1:].bool()
        if scores_rejected(args.distillation_loss):
            student_hidden = final_hidden_states(model, input_ids, attention_mask)[:, :-1]
        else:  # the rejected rows are never scored: the student reads the chosen half only
            pairs = input_ids.shape[0] // 2
            chosen = final_hidden_states(model, input_ids[:pairs], attention_mask[:pairs])[:, :-1]
            student_hidden = torch.cat([chosen, torch.zeros_like(chosen)])
        teacher_hidden = None
        if needs_teacher(args.distillation_loss):
            with torch.no_grad():
                teacher_hidden = self._teacher_hidden(input_ids, attention_mask, mask)
        beta = gradual_beta(self.state.global_step, args.beta, args.beta_start, args.beta_warmup_steps)
        with ExitStack() as heads:
            student_head = heads.enter_context(head_weight(model))
            teacher_head = heads.enter_context(head_weight(self.ref_model)) if teacher_hidden is not None else None
            alpha_teacher, alpha_student = args.alpha_teacher, args.alpha_student
            if args.distillation_loss == "distillm_v2":
                alpha_teacher, alpha_student = self._alphas(
                    student_hidden, student_head, teacher_hidden, teacher_head, labels, mask
                )
            out = distillation_loss(
                student_hidden,
                student_head,
                teacher_hidden,
                teacher_head,
                labels,
                mask,
                loss_type=args.distillation_loss,
                alpha_teacher=alpha_teacher,
                alpha_student=alpha_student,
                beta=beta,
                jsd_lambda=args.jsd_lambda,
                chunk_size=args.loss_chunk_size,
                vocab_size=self.vocab_size,
            )
        self._record(mode, out, alpha_teacher, alpha_student, beta)
        if return_outputs:
            return out.loss, {"chosen_divergence": out.chosen_divergence}
        return out.loss

    def _record(self, mode: str, out, alpha_teacher, alpha_student, beta: float) -> None:
        def mean(value) -> float:
            return float(torch.as_tensor(value, dtype=torch.float32).nanmean())

        pairs = out.chosen_divergence.shape[0]
        metrics = self._metrics[mode]
        metrics["kl/chosen"].append(mean(out.chosen_divergence))
        if out.rejected_divergence is not None:
            metrics["kl/rejected"].append(mean(out.rejected_divergence))
            metrics["logps/rejected"].append(mean(out.student_logps[pairs:]))
        metrics["logps/chosen"].append(mean(out.student_logps[:pairs]))
        if out.teacher_logps is not None:
            metrics["teacher_logps/chosen"].append(mean(out.teacher_logps[:pairs]))
            metrics["teacher_logps/rejected"].append(mean(out.teacher_logps[pairs:]))
        metrics["alpha/chosen"].append(mean(alpha_teacher))
        metrics["alpha/rejected"].append(mean(alpha_student))
        metrics["beta"].append(float(beta))
