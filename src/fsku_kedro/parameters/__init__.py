"""Typed settings: one Pydantic model per parameters block, holding the only defaults.

``ROOTS`` maps every top-level parameters key to its model. ``resolve_parameters`` checks the merged
parameters of a run against them before any node runs and returns them complete (defaults filled
in), or raises one ``SettingsError`` that names each bad key, where it was set, the allowed keys and
the nearest one to a misspelling.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from fsku_kedro.errors import UserInputError
from fsku_kedro.parameters.base import Settings
from fsku_kedro.parameters.compression import CompressionSettings
from fsku_kedro.parameters.distillation import DistillationSettings
from fsku_kedro.parameters.generation import GeneratorSettings
from fsku_kedro.parameters.inference import InferenceSettings
from fsku_kedro.parameters.knowledge_base import KnowledgeBaseSettings
from fsku_kedro.parameters.model_dirs import ModelDirSettings
from fsku_kedro.parameters.package import PackageSettings
from fsku_kedro.parameters.response_generation import ResponseGenerationSettings
from fsku_kedro.parameters.retrieval import RetrievalSettings
from fsku_kedro.parameters.sources import ParameterSources
from fsku_kedro.parameters.student_shape import StudentShapeSettings

ROOTS: dict[str, type[Settings]] = {
    "knowledge_base": KnowledgeBaseSettings,
    "retrieval": RetrievalSettings,
    "response_generation": ResponseGenerationSettings,
    "teacher": GeneratorSettings,
    "student": GeneratorSettings,
    "distillation": DistillationSettings,
    "compression": CompressionSettings,
    "inference": InferenceSettings,
    "package": PackageSettings,
    "model_dirs": ModelDirSettings,
    "student_shape": StudentShapeSettings,
}


class SettingsError(UserInputError):
    """Parameters that cannot work; raised before the first node runs."""


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The settings model that holds the key at ``path`` (a tuple of field names)."""
    current: type[BaseModel] | None = model
    for key in path:
        if current is None or key not in current.model_fields:
            return None
        current = _settings_type(current.model_fields[key].annotation)
    return current


def _settings_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation) if get_origin(annotation) is not None else ():
        found = _settings_type(argument)
        if found is not None:
            return found
    return None


def _describe(root: str, model: type[Settings], error: dict[str, Any], sources: ParameterSources | None) -> str:
    path = tuple(str(part) for part in error["loc"])
    full = (root, *path)
    key = ".".join(full)
    where = sources.where(full) if sources is not None else ""
    origin = f" (set in {where})" if where else ""
    if error["type"] == "extra_forbidden":
        holder = _model_at(model, path[:-1])
        allowed = sorted(holder.model_fields) if holder is not None else []
        near = difflib.get_close_matches(path[-1], allowed, n=1, cutoff=0.6)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        return f"{key}: unknown key{origin}.{hint} Allowed keys under {'.'.join(full[:-1])}: {', '.join(allowed)}"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = "" if isinstance(value, dict) or error["type"] == "missing" else f" (got {value!r})"
    return f"{key}: {message}{shown}{origin}"


def resolve_parameters(raw: dict[str, Any], sources: ParameterSources | None = None) -> dict[str, Any]:
    """Every block of ``raw`` checked against its model, with every default filled in.

    Raises ``SettingsError`` listing all problems at once.
    """
    problems: list[str] = []
    resolved: dict[str, Any] = {}
    for name in raw:
        if name not in ROOTS:
            where = sources.where((name,)) if sources is not None else ""
            near = difflib.get_close_matches(name, list(ROOTS), n=1, cutoff=0.6)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            problems.append(f"{name}: unknown parameters block{f' (set in {where})' if where else ''}.{hint} "
                            f"Known blocks: {', '.join(ROOTS)}")
    for name, model in ROOTS.items():
        value = raw.get(name)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.append(f"{name}: must be a mapping of settings, got {value!r}")
            continue
        try:
            resolved[name] = model.model_validate(value).model_dump()
        except ValidationError as error:
            problems.extend(_describe(name, model, item, sources) for item in error.errors())
    if problems:
        raise SettingsError(f"{len(problems)} problem(s) in the parameters:\n- " + "\n- ".join(problems))
    return resolved
