"""distillation: rounds, the loss, LoRA, the trainer's arguments and the validation after each round."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, ValidationError, model_validator

from fsku_kedro.names import LOSS_DIVERGENCES
from fsku_kedro.parameters.base import Settings
from fsku_kedro.parameters.generation import BackendSettings
from fsku_kedro.parameters.inference import BenchmarkSliceSettings
from fsku_kedro.parameters.trainer_fields import ConfigClassSettings

LOSS_TYPES = tuple(LOSS_DIVERGENCES)
BASELINES = ("dpo", "orpo")  # TRL's own preference trainers over the same pairs
CHOICE_TARGET = "choice_target"  # the teacher's debiased option distribution (distillation/choice_trainer.py)
METHODS = LOSS_TYPES + BASELINES + (CHOICE_TARGET,)
Method = Literal[METHODS]


class LauncherSettings(Settings):
    """in_process, or accelerate: the node starts `accelerate launch` once for every rank."""

    type: Literal["in_process", "accelerate"] = "in_process"
    config_file: str = "conf/accelerate/deepspeed_zero3.yaml"  # or conf/accelerate/fsdp.yaml
    num_processes: PositiveInt | None = None  # None: the config file's
    extra_args: list[str] = Field(default_factory=list)


class DistillMSettings(Settings):
    """The DistiLLM-2 settings of the distillation losses (distillm_v2 ... seqkd): the one definition of
    their defaults, ranges and help, from which the trainer's ``DistillationConfig`` is built."""

    alpha_teacher: float = Field(0.1, gt=0.0, lt=1.0, description="Skew of KL(p || a·p + (1-a)·q) on chosen tokens.")
    alpha_student: float = Field(0.1, gt=0.0, lt=1.0,
                                 description="Skew of KL(q || (1-a)·p + a·q) on rejected tokens.")
    beta: float = Field(1.0, ge=0.0, le=2.0,
                        description="Weight of the rejected term; the chosen term gets 2 - beta (not DPO's beta).")
    adaptive_alpha: bool = Field(
        False, description="Per-pair alpha from the teacher-student probability gap, anchored on early steps.")
    alpha_anchor_steps: PositiveInt = Field(
        10, description="Optimizer steps whose mean probability gap sets the adaptive-alpha anchor.")
    min_alpha: float = Field(0.01, gt=0.0, lt=1.0, description="Lower clip of the adaptive alpha.")
    beta_start: float | None = Field(
        None, ge=0.0, le=2.0, description="Gradual beta: start value, moved linearly to beta over beta_warmup_steps.")
    beta_warmup_steps: NonNegativeInt = Field(0, description="Steps of the gradual-beta ramp (0 = constant).")
    jsd_lambda: float = Field(0.5, gt=0.0, lt=1.0, description="Mixture weight of the teacher in the gkd (JSD) loss.")
    loss_chunk_size: PositiveInt = Field(128, description="Response tokens projected through the LM heads at once.")


class DPOSettings(ConfigClassSettings):
    """trl.DPOConfig fields for the dpo baseline."""

    config_class = "trl:DPOConfig"
    beta: float = Field(0.1, gt=0.0)


class ORPOSettings(ConfigClassSettings):
    """trl.experimental.orpo.ORPOConfig fields for the orpo baseline."""

    config_class = "trl.experimental.orpo:ORPOConfig"
    beta: float = Field(0.1, gt=0.0)


class ChoiceTargetSettings(Settings):
    """The questions of ``choice_target`` rounds and their teacher targets (distillation/choice_targets.py):
    the prompt set's multiple-choice items and FSKU-style questions made from the knowledge base."""

    template: str = "closed_book_multiple_choice"  # the served prompt the teacher and the student read
    corpus_questions: NonNegativeInt = 0  # questions made from the knowledge base, besides the prompt set's
    validation_share: float = Field(0.2, ge=0.0, lt=1.0)  # of the corpus questions (seeded by their id)
    seed: int = 0  # option shuffles and the corpus questions
    # The engine that scores the teacher's options: transformers (rows per batch: backend.batch_size) or
    # vLLM, whose prefix cache shares each question's head across its rotations.
    backend: BackendSettings = BackendSettings()
    # Training reads each target sharpened to p ** (1 / temperature), renormalised; the stored targets
    # stay the teacher's, so arms that differ only here share them.
    temperature: float = Field(1.0, gt=0.0)
    # Each training question is shown in this many option orders per epoch: its own and orders - 1
    # other seeded ones, each option keeping its probability (the cyclic average approximates the
    # teacher's preference among the option texts, wherever they stand).
    orders: PositiveInt = 1
    # Of the corpus questions, this seeded share ask which statement is NOT correct (300 of FSKU's
    # 1000 stems do), among chunks that allow one (corpus_questions.multiple_choice_questions).
    negative_share: float = Field(0.0, ge=0.0, le=1.0)
    # The other options of a corpus question: sentences of other documents (true, off topic), or
    # false statements made from the question's own document, as FSKU's options are.
    distractors: Literal["other_documents", "falsified"] = "other_documents"
    # Training reads each target as (1 - w) * teacher + w * the known answer, where the question has
    # one (made from the knowledge base): the teacher's preference with the answer the question was made with.
    label_weight: float = Field(0.0, ge=0.0, le=1.0)


class LoraSettings(Settings):
    r: PositiveInt = 16
    alpha: PositiveInt = 32
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # Which decoder layers get adapters: all, or only those on either side of a block the depth
    # pruning removed (models/pruning.py records the cuts; every layer for an unpruned student).
    layers: Literal["all", "next_to_removed"] = "all"

    @model_validator(mode="after")
    def _layers_need_named_modules(self) -> LoraSettings:
        if self.layers == "next_to_removed" and not isinstance(self.target_modules, list):
            raise ValueError("lora.layers next_to_removed needs target_modules as a list of module names "
                             "(PEFT cannot pick layers for 'all-linear')")
        return self


class TrainingSettings(ConfigClassSettings):
    """transformers TrainingArguments (and TRL config) fields; the declared ones are the CPU defaults."""

    config_class = "trl:DPOConfig"
    num_train_epochs: float = Field(1.0, gt=0.0)
    max_steps: int = -1
    per_device_train_batch_size: PositiveInt = 2
    per_device_eval_batch_size: PositiveInt = 2
    gradient_accumulation_steps: PositiveInt = 1
    learning_rate: float = Field(1.0e-3, gt=0.0)  # LoRA on the small CPU default (benchmarks/distillation_effect.py)
    lr_scheduler_type: str = "constant"
    warmup_steps: NonNegativeInt = 0
    max_length: PositiveInt = 1024
    gradient_checkpointing: bool = False
    bf16: bool | Literal["auto"] = "auto"  # auto: on where the compute dtype auto is bfloat16 (models/compute_dtype.py)
    logging_steps: PositiveInt = 1
    save_steps: PositiveInt = 5
    save_total_limit: PositiveInt | None = 2
    eval_strategy: Literal["no", "steps", "epoch"] = "epoch"
    seed: int = 0
    dataloader_num_workers: NonNegativeInt = 0


class HeldOutBenchmarkSettings(Settings):
    """FSKU benchmark questions outside the slice that chose the inference settings, answered by the
    served path (closed book, one pass) after each round; 0 questions of a kind: none."""

    mc_questions: NonNegativeInt = 0
    descriptive_questions: NonNegativeInt = 0
    option_orders: list[Literal["own", "shuffled"]] = Field(default_factory=lambda: ["own", "shuffled"], min_length=1)
    seed: int = 0  # which questions, and the shuffled option order
    # The settings slice they stay out of (benchmarks/real_teacher_quality.py's 200 MC and 20 descriptive).
    excluded: BenchmarkSliceSettings = BenchmarkSliceSettings(mc_limit=200, descriptive_limit=20, seed=0)


class ValidationSettings(Settings):
    """The FSKU score on held-out sample questions (answered as ``inference`` serves them, closed book)
    and the token KL on held-out pairs, after each round; with ``fsku_benchmark``, also held-out FSKU
    benchmark questions."""

    batch_size: PositiveInt = 8  # token KL / NLL (answers follow the inference settings: the served path)
    max_pairs: PositiveInt = 32  # held-out pairs for token KL / NLL
    max_length: PositiveInt = 1024
    fsku_benchmark: HeldOutBenchmarkSettings = HeldOutBenchmarkSettings()
    # What select_best_round maximises: the FSKU score on the held-out sample questions, or the MC
    # accuracy on the held-out benchmark questions (the mean over fsku_benchmark.option_orders).
    select_by: Literal["fsku_score", "benchmark_mc_accuracy"] = "fsku_score"

    @model_validator(mode="after")
    def _selection_is_measured(self) -> ValidationSettings:
        if self.select_by == "benchmark_mc_accuracy" and not self.fsku_benchmark.mc_questions:
            raise ValueError("validation.select_by benchmark_mc_accuracy needs validation.fsku_benchmark.mc_questions "
                             "above 0")
        return self


DEFAULT_SCHEDULE = ("seqkd", "distillm_v2")  # an SFT warm-up on the teacher's responses, then DistiLLM-2


class RoundSettings(Settings):
    """One round of the schedule: its loss, and what it changes in the loss settings and the trainer's
    arguments for that round only (keys of distillation.distillm, .dpo, .orpo and .training)."""

    loss: Method
    distillm: dict[str, Any] = Field(default_factory=dict)
    dpo: dict[str, Any] = Field(default_factory=dict)
    orpo: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)


def _schedule_list(schedule: Any) -> Any:
    """The two command-line forms of a schedule as its list (Kedro splits ``--params`` at every comma):
    loss names separated by spaces (``distillation.schedule=seqkd distillm_v2``), or entries keyed by
    their position (``distillation.schedule.0.loss=seqkd,distillation.schedule.1.loss=distillm_v2``,
    which may also set a round's overrides, ``distillation.schedule.1.distillm.beta=0.5``)."""
    if isinstance(schedule, str):
        return [{"loss": name} for name in schedule.split()]
    if isinstance(schedule, dict) and schedule and all(str(key).isdigit() for key in schedule):
        positions = sorted(int(key) for key in schedule)
        if positions != list(range(len(positions))):
            raise ValueError(f"schedule positions must run 0, 1, 2, ... without gaps; got {positions}")
        return [schedule[key] for key in sorted(schedule, key=int)]
    return schedule


class DistillationSettings(Settings):
    """Distillation rounds and how each trains. The rounds are ``schedule``, one entry per round;
    ``loss`` (the same loss every round) with ``rounds``, or ``rounds`` alone (an SFT warm-up, then
    DistiLLM-2), are shorter ways to write it. After validation ``schedule`` always holds the rounds,
    ``rounds`` their number and ``loss`` is None."""

    schedule: list[RoundSettings] | None = None
    rounds: PositiveInt | None = None
    loss: Method | None = None
    keep_base_if_better: bool = True  # the score check may keep the undistilled student
    checkpoint_dir: str = "data/06_models/distillation/checkpoints"
    # The teacher's hidden states on each pair row's response tokens, kept per teacher and reused by
    # every epoch, round and arm (distillation/teacher_signal.py); None runs the teacher every step.
    teacher_signal_dir: str | None = "data/06_models/distillation/teacher_signal"
    qlora: bool = False  # 4-bit base (bitsandbytes); CUDA only
    launcher: LauncherSettings = LauncherSettings()
    distillm: DistillMSettings = DistillMSettings()
    dpo: DPOSettings = DPOSettings()
    orpo: ORPOSettings = ORPOSettings()
    choice_targets: ChoiceTargetSettings = ChoiceTargetSettings()
    lora: LoraSettings = LoraSettings()
    training: TrainingSettings = TrainingSettings()
    validation: ValidationSettings = ValidationSettings()

    @model_validator(mode="before")
    @classmethod
    def _one_schedule(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        schedule, loss, rounds = _schedule_list(data.get("schedule")), data.get("loss"), data.get("rounds")
        if rounds is not None and (not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1):
            return data  # the field's own check reports it
        if schedule is not None:
            if loss is not None:
                raise ValueError("set either loss (the same loss every round) or schedule (one entry per round), "
                                 "not both")
            if not isinstance(schedule, list) or not schedule:
                raise ValueError("schedule must be a non-empty list of rounds, such as [{loss: seqkd}, {loss: kd}]")
            if rounds is not None and rounds != len(schedule):
                raise ValueError(f"rounds is {rounds} but schedule has {len(schedule)} entries; the schedule sets the "
                                 "number of rounds, so leave rounds out or make them agree")
        elif loss is not None:
            schedule = [{"loss": loss}] * (rounds or len(DEFAULT_SCHEDULE))
        else:
            count = rounds or len(DEFAULT_SCHEDULE)
            schedule = [{"loss": DEFAULT_SCHEDULE[min(i, len(DEFAULT_SCHEDULE) - 1)]} for i in range(count)]
        return {**data, "schedule": schedule, "rounds": len(schedule), "loss": None}

    @model_validator(mode="after")
    def _rounds_are_valid(self) -> DistillationSettings:
        if self.launcher.type == "accelerate" and not self.launcher.config_file:
            raise ValueError("launcher.type accelerate needs launcher.config_file (conf/accelerate/...)")
        if self.launcher.type == "accelerate" and CHOICE_TARGET in self.losses:
            raise ValueError("a choice_target round trains in process only; set launcher.type in_process")
        for number in range(1, len(self.schedule) + 1):
            try:
                trained = self.for_round(number)
            except ValidationError as error:
                problem = error.errors()[0]
                block = {"DistillMSettings": "distillm", "DPOSettings": "dpo", "ORPOSettings": "orpo",
                         "TrainingSettings": "training"}.get(error.title)
                where = ".".join(str(part) for part in ([block] if block else []) + list(problem["loc"]))
                raise ValueError(f"schedule entry {number}: {where}: {problem['msg']}") from error
            anchor, steps = trained.distillm.alpha_anchor_steps, trained.training.max_steps
            if trained.losses == ["distillm_v2"] and trained.distillm.adaptive_alpha and 0 < steps <= anchor:
                raise ValueError(
                    f"schedule entry {number}: distillm.adaptive_alpha is on, but alpha adapts only after the "
                    f"distillm.alpha_anchor_steps ({anchor}) anchor steps and the round trains "
                    f"training.max_steps {steps}: lower alpha_anchor_steps or raise max_steps")
        return self

    def for_round(self, number: int) -> DistillationSettings:
        """These settings as round ``number`` (from 1) trains: its loss alone in the schedule, and its
        overrides applied to the loss settings and the trainer's arguments."""
        entry = self.schedule[number - 1]
        blocks = {
            "distillm": DistillMSettings.model_validate({**self.distillm.model_dump(), **entry.distillm}),
            "dpo": DPOSettings.model_validate({**self.dpo.as_kwargs(), **entry.dpo}),
            "orpo": ORPOSettings.model_validate({**self.orpo.as_kwargs(), **entry.orpo}),
            "training": TrainingSettings.model_validate({**self.training.as_kwargs(), **entry.training}),
        }
        return self.model_copy(update={**blocks, "schedule": [entry], "rounds": 1})

    @property
    def losses(self) -> list[str]:
        return [entry.loss for entry in self.schedule]
