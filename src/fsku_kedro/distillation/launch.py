"""Training under ``accelerate launch`` (several GPUs, DeepSpeed ZeRO-3 or FSDP), driven by the
distillation node without running the node once per rank.

The node writes a spec (model directories, the pairs saved with ``save_to_disk``, the settings)
and starts ``accelerate launch --config_file <conf/accelerate/...> -m fsku_kedro.distillation.launch
--spec <file>``. Every rank trains; rank 0 writes the adapter (safetensors) and the step history,
which the node reads back and returns like an in-process run. With ``MLFLOW_RUN_ID`` and
``MLFLOW_TRACKING_URI`` in the environment (the node passes those of the Kedro run), transformers'
MLflow callback on rank 0 logs the live step metrics into that same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from fsku_kedro.errors import UserInputError
from fsku_kedro.parameters.distillation import (
    LOSS_TYPES,
    DistillationSettings,
    LauncherSettings,
    TrainingSettings,
)

logger = logging.getLogger(__name__)

HISTORY = "log_history.json"


def launch_command(launcher: LauncherSettings, spec_file: Path) -> list[str]:
    """The ``accelerate launch`` command line for ``launcher`` (parameters ``distillation.launcher``)."""
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if launcher.config_file:
        command += ["--config_file", str(launcher.config_file)]
    if launcher.num_processes:
        command += ["--num_processes", str(launcher.num_processes)]
    command += [str(arg) for arg in launcher.extra_args]
    return [*command, "-m", "fsku_kedro.distillation.launch", "--spec", str(spec_file)]


def launch_problems(settings: DistillationSettings, device_count: int | None = None) -> list[str]:
    """What in ``distillation.launcher`` and its accelerate config file cannot run; empty when all can.

    Checked before the first node (``ModelPreflightHook``) and again before launching.
    """
    import yaml

    launcher = settings.launcher
    if launcher.type != "accelerate":
        return []
    path = Path(launcher.config_file)
    if not path.is_file():
        return [f"distillation.launcher.config_file: {path} does not exist"]
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        return [f"{path}: not valid YAML ({error})"]
    problems = []
    kind = config.get("distributed_type", "NO")
    processes = launcher.num_processes or int(config.get("num_processes") or 1)
    if not config.get("use_cpu", False):
        if device_count is None:
            import torch

            device_count = torch.cuda.device_count()
        if processes > device_count:
            problems.append(f"{path}: {processes} processes need as many CUDA GPUs; {device_count} visible "
                            "(set distillation.launcher.num_processes, or use_cpu: true in the file)")
    reads_heads = any(loss in LOSS_TYPES for loss in settings.losses)
    head_trained = isinstance(settings.lora.target_modules, list) and bool(
        {"lm_head", "embed_tokens"} & set(settings.lora.target_modules)
    )
    if kind == "DEEPSPEED":
        zero = config.get("deepspeed_config") or {}
        if importlib.util.find_spec("deepspeed") is None:
            problems.append(f"{path}: DeepSpeed is not installed (pip install deepspeed), or choose "
                            "conf/accelerate/fsdp.yaml")
        if zero.get("zero_stage") == 3:
            if reads_heads and head_trained:
                problems.append("distillation.lora.target_modules trains the LM head or embeddings, which ZeRO-3 "
                                "partitions: the chunked distillation loss cannot return their gradient; drop "
                                "lm_head/embed_tokens or use conf/accelerate/fsdp.yaml")
            if settings.qlora:
                problems.append("distillation.qlora loads the 4-bit student whole on each GPU; ZeRO-3 cannot "
                                "partition it: set qlora: false or use one process")
        steps = zero.get("gradient_accumulation_steps")
        if steps not in (None, "auto") and int(steps) != settings.training.gradient_accumulation_steps:
            problems.append(f"{path}: gradient_accumulation_steps {steps} differs from "
                            f"distillation.training.gradient_accumulation_steps "
                            f"{settings.training.gradient_accumulation_steps}; make them equal (or write auto)")
    elif kind == "FSDP":
        version = int((config.get("fsdp_config") or {}).get("fsdp_version", 1))
        if version != 2 and reads_heads:
            problems.append(f"{path}: fsdp_version {version}; the chunked distillation loss reads the LM heads "
                            "as FSDP2 leaves them after the forward: set fsdp_version: 2")
        if settings.qlora:
            problems.append("distillation.qlora loads the 4-bit student whole on each GPU; FSDP cannot shard "
                            "it: set qlora: false or use one process")
    if config.get("mixed_precision") == "bf16" and settings.training.bf16 is False:
        problems.append(f"{path}: mixed_precision bf16 while distillation.training.bf16 is false; make them agree")
    return problems


def run_launched(
    method: str, student: Any, teacher: Any, pairs: Any, settings: DistillationSettings, output_dir: Path,
) -> tuple[Any, list[dict[str, Any]]]:
    """Train in ``accelerate launch`` processes; returns (LoraAdapter, log history) from rank 0's files."""
    from fsku_kedro.distillation.merging import load_adapter

    problems = launch_problems(settings)
    if problems:
        raise UserInputError("accelerate launch cannot run these settings:\n- " + "\n- ".join(problems))
    for role, bundle in (("student", student), ("teacher", teacher)):
        if not bundle.path or not Path(bundle.path).is_dir():
            raise ValueError(f"accelerate launch needs the {role} as a model directory; {bundle.name} has none")
    work = output_dir / "launch"
    result_dir = work / "result"
    work.mkdir(parents=True, exist_ok=True)
    pairs.save_to_disk(str(work / "pairs"))
    spec = {
        "method": method, "student_dir": student.path, "student_name": student.name,
        "teacher_dir": teacher.path, "teacher_name": teacher.name, "pairs_dir": str(work / "pairs"),
        "settings": settings.model_dump(mode="json", exclude={"launcher"}),
        "output_dir": str(output_dir), "result_dir": str(result_dir),
    }
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec, ensure_ascii=False, default=str), encoding="utf-8")
    env = dict(os.environ)
    try:
        import mlflow

        if mlflow.active_run() is not None:
            env.update(MLFLOW_RUN_ID=mlflow.active_run().info.run_id, MLFLOW_TRACKING_URI=mlflow.get_tracking_uri())
    except ImportError:  # pragma: no cover - mlflow is a project dependency
        pass
    command = launch_command(settings.launcher, spec_file)
    logger.info("Launching: %s", shlex.join(command))
    completed = subprocess.run(command, env=env, check=False)
    if completed.returncode:
        raise RuntimeError(f"accelerate launch exited with {completed.returncode}; command: {shlex.join(command)}")
    adapter = load_adapter(result_dir)
    history = json.loads((work / HISTORY).read_text(encoding="utf-8"))
    return adapter, history


def main(argv: list[str] | None = None) -> int:
    from accelerate import PartialState
    from datasets import load_from_disk

    from fsku_kedro.distillation.merging import extract_adapter, save_adapter
    from fsku_kedro.distillation.training import train_round, trainer_bf16
    from fsku_kedro.models.loading import load_bundle

    parser = argparse.ArgumentParser(description="One distillation round under accelerate launch")
    parser.add_argument("--spec", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    settings = DistillationSettings.model_validate(spec["settings"])
    if os.environ.get("MLFLOW_RUN_ID"):
        training = TrainingSettings.model_validate({**settings.training.as_kwargs(), "report_to": ["mlflow"]})
        settings = settings.model_copy(update={"training": training})
    dtype = "bfloat16" if trainer_bf16(settings.training.bf16) else "float32"
    student = load_bundle(Path(spec["student_dir"]), dtype, False, spec["student_name"])
    teacher = load_bundle(Path(spec["teacher_dir"]), dtype, False, spec["teacher_name"])
    pairs = load_from_disk(spec["pairs_dir"])
    trained, log_history = train_round(spec["method"], student, teacher, pairs, settings, Path(spec["output_dir"]))
    state = PartialState()
    if state.is_main_process:
        result = Path(spec["result_dir"])
        result.mkdir(parents=True, exist_ok=True)
        save_adapter(result, extract_adapter(trained))
        (result.parent / HISTORY).write_text(json.dumps(log_history), encoding="utf-8")
    state.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
