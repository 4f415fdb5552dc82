"""The distillation trainer's configuration: TRL's DPOConfig plus the DistiLLM-2 settings.

The DistiLLM-2 fields are not written here: they are built from ``DistillMSettings`` (their
defaults, help and ranges), so the settings, this configuration and its checks cannot drift apart.
"""

from __future__ import annotations

from dataclasses import field, make_dataclass

from pydantic import ValidationError
from trl import DPOConfig

from fsku_kedro.parameters.distillation import LOSS_TYPES, DistillMSettings


def _post_init(self) -> None:
    DPOConfig.__post_init__(self)
    if self.distillation_loss not in LOSS_TYPES:
        raise ValueError(
            f"distillation_loss {self.distillation_loss!r} is not one of {', '.join(LOSS_TYPES)} "
            "(dpo and orpo are separate trainers)"
        )
    try:
        DistillMSettings.model_validate({name: getattr(self, name) for name in DistillMSettings.model_fields})
    except ValidationError as error:
        problem = error.errors()[0]
        raise ValueError(f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None


_DISTILLM_FIELDS = [
    (name, info.annotation, field(default=info.default, metadata={"help": info.description}))
    for name, info in DistillMSettings.model_fields.items()
]

DistillationConfig = make_dataclass(
    "DistillationConfig",
    [
        ("distillation_loss", str, field(default="distillm_v2", metadata={"help": f"One of {', '.join(LOSS_TYPES)}."})),
        *_DISTILLM_FIELDS,
        ("restore_callback_states_from_checkpoint", bool, field(
            default=True, metadata={"help": "Restore the adaptive-alpha anchor when resuming from a checkpoint."})),
    ],
    bases=(DPOConfig,),
    namespace={
        "__post_init__": _post_init,
        "__doc__": "``DPOConfig`` with the contrastive-distillation settings of DistiLLM-2 (``DistillMSettings``). "
                   "``beta`` is DistiLLM-2's weight between the two terms (chosen ``2 - beta``, rejected ``beta``), "
                   "not DPO's temperature; its default is the released 1.0.",
    },
)
DistillationConfig.__module__ = __name__
