"""The distillation trainer's configuration: TRL's DPOConfig plus the DistiLLM-2 settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig

from fsku_kedro.parameters.distillation import LOSS_TYPES


@dataclass
class DistillationConfig(DPOConfig):
    """``DPOConfig`` with the contrastive-distillation knobs of DistiLLM-2.

    ``beta`` here is DistiLLM-2's weight between the two terms (chosen ``2 - beta``, rejected
    ``beta``), not DPO's temperature; its default is the released 1.0.
    """

    distillation_loss: str = field(default="distillm_v2", metadata={"help": f"One of {', '.join(LOSS_TYPES)}."})
    alpha_teacher: float = field(default=0.1, metadata={"help": "Skew of KL(p || a·p + (1-a)·q) on chosen tokens."})
    alpha_student: float = field(default=0.1, metadata={"help": "Skew of KL(q || (1-a)·p + a·q) on rejected tokens."})
    beta: float = field(default=1.0, metadata={"help": "Weight of the rejected term; the chosen term gets 2 - beta."})
    adaptive_alpha: bool = field(
        default=False,
        metadata={"help": "Per-pair alpha from the teacher-student probability gap, anchored on early steps."},
    )
    alpha_anchor_steps: int = field(
        default=10, metadata={"help": "Optimizer steps whose mean probability gap sets the adaptive-alpha anchor."}
    )
    min_alpha: float = field(default=0.01, metadata={"help": "Lower clip of the adaptive alpha."})
    beta_start: float | None = field(
        default=None, metadata={"help": "Gradual beta: start value, moved linearly to beta over beta_warmup_steps."}
    )
    beta_warmup_steps: int = field(default=0, metadata={"help": "Steps of the gradual-beta ramp (0 = constant)."})
    jsd_lambda: float = field(default=0.5, metadata={"help": "Mixture weight of the teacher in the gkd (JSD) loss."})
    loss_chunk_size: int = field(default=128, metadata={"help": "Response tokens projected through the heads at once."})
    restore_callback_states_from_checkpoint: bool = field(
        default=True, metadata={"help": "Restore the adaptive-alpha anchor when resuming from a checkpoint."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.distillation_loss not in LOSS_TYPES:
            raise ValueError(
                f"distillation_loss {self.distillation_loss!r} is not one of {', '.join(LOSS_TYPES)} "
                "(dpo and orpo are separate trainers)"
            )
        for name in ("alpha_teacher", "alpha_student", "jsd_lambda"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie strictly between 0 and 1, got {getattr(self, name)}")
        if not 0 <= self.beta <= 2 or (self.beta_start is not None and not 0 <= self.beta_start <= 2):
            raise ValueError("beta and beta_start must lie in [0, 2] so that both term weights stay non-negative")
        if self.loss_chunk_size < 1:
            raise ValueError("loss_chunk_size must be positive")
