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


def validate_parameters(raw: dict[str, Any], sources: ParameterSources | None = None) -> dict[str, Settings]:
    """Every block of ``raw`` checked against its model, as the model (every default filled in).

    Raises ``SettingsError`` listing all problems at once.
    """
    problems: list[str] = []
    validated: dict[str, Settings] = {}
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
            validated[name] = model.model_validate(value)
        except ValidationError as error:
            problems.extend(_describe(name, model, item, sources) for item in error.errors())
    if problems:
        raise SettingsError(f"{len(problems)} problem(s) in the parameters:\n- " + "\n- ".join(problems))
    return validated


def resolve_parameters(raw: dict[str, Any], sources: ParameterSources | None = None) -> dict[str, Any]:
    """``validate_parameters`` as plain dicts."""
    return {name: model.model_dump() for name, model in validate_parameters(raw, sources).items()}


def parameters_for_nodes(validated: dict[str, Settings], node_paths: set[str]) -> dict[str, Any]:
    """The validated settings as Kedro's parameters: each block as its model, except a block whose parts
    nodes read (``teacher.generation``), which stays a dict holding each such part as its model. Kedro's
    typed-parameter step then hands nodes these models as they are (pydantic does not validate an
    instance of the model again), so every setting is validated once."""
    tree: dict[str, Any] = {}
    for root, model in validated.items():
        parts = sorted(path.split(".")[1:] for path in node_paths if path.startswith(root + "."))
        if not parts:
            tree[root] = model
            continue
        tree[root] = model.model_dump()
        for keys in parts:
            holder, value = tree[root], model
            for key in keys:
                value = getattr(value, key, None)
            for key in keys[:-1]:
                holder = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(value, BaseModel) and isinstance(holder, dict):
                holder[keys[-1]] = value
    return tree
