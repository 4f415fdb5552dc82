"""One round of training: the trainer chosen by ``loss``, LoRA, resume and the step history.

``settings.loss`` selects the method over the same pair data: the distillation losses of
``DistillationTrainer`` (distillm_v2, distillm_v1, kd, rkl, gkd, seqkd) or TRL's own preference
trainers as baselines (``dpo``: ``trl.DPOTrainer``; ``orpo``: ``trl.experimental.orpo``). A
``choice_target`` round trains on the teacher's debiased multiple-choice targets instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerState
from transformers.trainer_utils import get_last_checkpoint

from fsku_kedro.hashing import json_hash
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.compute_dtype import auto_dtype
from fsku_kedro.parameters.distillation import CHOICE_TARGET, LOSS_TYPES, DistillationSettings, LoraSettings

logger = logging.getLogger(__name__)


def lora_config(settings: LoraSettings, model: Any = None):
    """A PEFT LoraConfig from the ``lora`` settings (rank, alpha, dropout, target modules, and the
    layers next to the pruning's cuts when ``layers`` is ``next_to_removed``)."""
    from peft import LoraConfig

    from fsku_kedro.models.pruning import next_to_removed

    layers = {}
    if settings.layers == "next_to_removed":
        if model is None:
            raise ValueError("lora.layers next_to_removed needs the student to find its pruned layers")
        layers = {"layers_to_transform": next_to_removed(model.config), "layers_pattern": "layers"}
        logger.info("LoRA on the layers next to the removed blocks: %s", layers["layers_to_transform"])
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
        **layers,
    )


def check_qlora(student: ModelBundle) -> None:
    """Fail before any work when QLoRA cannot run here."""
    if not torch.cuda.is_available():
        raise RuntimeError("distillation.qlora needs a CUDA GPU (bitsandbytes 4-bit training); set qlora: false on CPU")
    if not student.path:
        raise ValueError(f"distillation.qlora reloads the student in 4 bits from its directory; {student.name} has none")


def quantized_base(student: ModelBundle) -> torch.nn.Module:
    """The student reloaded with NF4 weights (QLoRA); the adapter is later merged into the full-precision student."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(student.path, quantization_config=config, dtype=torch.bfloat16)
    return prepare_model_for_kbit_training(model)


def run_fingerprint(*parts: Any) -> str:
    """Names the checkpoint folder: a restart with the same inputs resumes, anything else starts fresh."""
    return json_hash(parts, length=12)


def trainer_bf16(setting: bool | str) -> bool:
    """The trainer's ``bf16``: as set, or for ``auto`` whether this machine's compute dtype is bfloat16
    (on a CPU, TRL's bf16 means bf16 autocast, which is slow without native bf16)."""
    return auto_dtype().dtype == "bfloat16" if setting == "auto" else bool(setting)


def _common_arguments(settings: DistillationSettings, output_dir: Path) -> dict[str, Any]:
    # Unset (None) training fields keep the trainer's own defaults.
    training = {key: value for key, value in settings.training.as_kwargs().items() if value is not None}
    training["bf16"] = trainer_bf16(settings.training.bf16)
    return {
        "output_dir": str(output_dir),
        "report_to": "none",  # the node returns the history; the catalog logs it to MLflow
        "save_strategy": "steps",
        "save_only_model": False,
        "disable_tqdm": False,
        "remove_unused_columns": False,
        "include_num_input_tokens_seen": "non_padding",  # for the training tokens/s of the run
        "use_cpu": not torch.cuda.is_available(),
        **training,
    }


def build_trainer(
    method: str,
    student: ModelBundle,
    teacher: ModelBundle,
    pairs: Any,
    settings: DistillationSettings,
    output_dir: Path,
    callbacks: list[TrainerCallback] | None = None,
    choice_targets: Any = None,
):
    """The trainer for ``method`` over the train (and, if present, validation) pairs, or for
    ``choice_target`` over the rows of ``choice_targets``."""
    def pair_columns(split):
        return split.remove_columns([c for c in split.column_names if c not in ("prompt", "chosen", "rejected")])

    if method == CHOICE_TARGET and (choice_targets is None or choice_targets.empty):
        raise ValueError("a choice_target round needs the teacher's choice targets; none were computed")
    common = _common_arguments(settings, output_dir)
    model = student.model
    if settings.qlora:
        check_qlora(student)
        model = quantized_base(student)
    peft_config = lora_config(settings.lora, model)
    if method == CHOICE_TARGET:
        from fsku_kedro.distillation.choice_trainer import choice_trainer

        return choice_trainer(model, student.tokenizer, choice_targets, common, peft_config, callbacks,
                              temperature=settings.choice_targets.temperature, orders=settings.choice_targets.orders,
                              label_weight=settings.choice_targets.label_weight)
    train = pair_columns(pairs["train"])
    evaluation = pair_columns(pairs["validation"]) if "validation" in pairs else None
    if evaluation is None:
        common["eval_strategy"] = "no"
    kwargs = {
        "train_dataset": train,
        "eval_dataset": evaluation,
        "processing_class": student.tokenizer,
        "peft_config": peft_config,
        "callbacks": callbacks,
    }
    if method in LOSS_TYPES:
        from fsku_kedro.distillation.config import DistillationConfig
        from fsku_kedro.distillation.losses import needs_teacher
        from fsku_kedro.distillation.teacher_signal import TeacherSignalStore
        from fsku_kedro.distillation.trainer import DistillationTrainer
        from fsku_kedro.models.bundle import weights_key

        args = DistillationConfig(distillation_loss=method, **settings.distillm.model_dump(), **common)
        if settings.teacher_signal_dir and needs_teacher(method):
            kwargs["teacher_signal"] = TeacherSignalStore(
                settings.teacher_signal_dir, weights_key(teacher.name, teacher.model))
        return DistillationTrainer(
            model=model, ref_model=teacher.model, args=args, teacher_tokenizer=teacher.tokenizer, **kwargs
        )
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        # The reference is the student before training (LoRA disabled), as DPO defines it.
        args = DPOConfig(**settings.dpo.as_kwargs(), **common)
        return DPOTrainer(model=model, ref_model=None, args=args, **kwargs)
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(**settings.orpo.as_kwargs(), **common)
    return ORPOTrainer(model=model, args=args, **kwargs)


def train_round(
    method: str,
    student: ModelBundle,
    teacher: ModelBundle,
    pairs: Any,
    settings: DistillationSettings,
    output_dir: Path,
    extra_callbacks: list[TrainerCallback] | None = None,
    choice_targets: Any = None,
) -> tuple[Any, list[dict[str, float]]]:
    """Train, resuming from the newest checkpoint in ``output_dir`` if one exists.

    Returns the trained model (a PEFT model) and the logged records of every step, those
    before a resume included (they travel in the checkpoint's trainer state).
    """
    trainer = build_trainer(method, student, teacher, pairs, settings, output_dir, extra_callbacks, choice_targets)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last:
        state = TrainerState.load_from_json(str(Path(last) / "trainer_state.json"))
        if 0 < trainer.args.max_steps <= state.global_step:
            # Finished before the kill. The trainer, resumed at max_steps in the middle of an epoch,
            # would take one step more; the adapter is read back from the checkpoint instead.
            from fsku_kedro.distillation.merging import load_adapter, load_adapter_weights

            logger.info("Round already trained to step %d: its adapter is read from %s", state.global_step, last)
            load_adapter_weights(trainer.model, load_adapter(Path(last)).weights, f"{student.name} ({last})")
            return trainer.model, list(state.log_history)
        logger.info("Resuming %s training from %s", method, last)
    trainer.train(resume_from_checkpoint=last)
    return trainer.model, list(trainer.state.log_history)
