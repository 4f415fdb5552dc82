"""Teacher or student responses over the prompt set, resumable through the progress file."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fsku_kedro.generation.backends import make_backend
from fsku_kedro.generation.store import ResponseStore, fingerprint
from fsku_kedro.hashing import unit_hash
from fsku_kedro.models.bundle import ModelBundle, weights_key
from fsku_kedro.parameters.generation import RoleGenerationSettings

logger = logging.getLogger(__name__)


def _in_shard(pid: str, index: int, count: int) -> bool:
    return int(unit_hash("shard", pid) * count) == index


def _chat(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    chat = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return chat + [{"role": "user", "content": prompt}]


def generate_responses(
    prompt_set: pd.DataFrame, model: ModelBundle, response_store: ResponseStore, settings: RoleGenerationSettings
) -> pd.DataFrame:
    """Answer every prompt of this shard, appending each finished batch to ``response_store``;
    prompts already answered there with the same model and settings are not generated again."""
    sampling = settings.sampling()
    shard, shards = settings.shard_index, settings.num_shards
    # Keyed by the weights, not the folder: a retrained student gets new responses, the same student
    # saved again under a new version resumes.
    run = fingerprint(model.name, {**sampling.model_dump(), "system_prompt": settings.system_prompt,
                                   "weights": weights_key(model.name, model.model)})
    mine = prompt_set[[_in_shard(pid, shard, shards) for pid in prompt_set["prompt_id"]]]
    done = response_store.finished(run)
    todo = mine[~mine["prompt_id"].isin(done)]
    todo = todo.iloc[np.argsort(-todo["prompt"].str.len().to_numpy(), kind="stable")]
    logger.info(
        "%s: %d prompts in shard %d/%d, %d already answered", model.name, len(mine), shard, shards, len(mine) - len(todo)
    )
    if len(todo):
        backend = make_backend(model, settings, show_progress=False)  # progress is shown per flush below
        step = settings.batch_size * settings.batches_per_flush
        for start in tqdm(range(0, len(todo), step), desc=f"responses ({model.name})"):
            part = todo.iloc[start : start + step]
            chats = [_chat(prompt, settings.system_prompt) for prompt in part["prompt"]]
            completions = backend.generate(chats, sampling)
            response_store.append(
                [
                    {
                        "prompt_id": pid,
                        "prompt": prompt,
                        "model": model.name,
                        "generation": sampling.model_dump(),
                        "response": completion.text,
                        "finish_reason": completion.finish_reason,
                        "prompt_tokens": completion.prompt_tokens,
                        "completion_tokens": completion.completion_tokens,
                        "fingerprint": run,
                        "shard": shard,
                    }
                    for pid, prompt, completion in zip(part["prompt_id"], part["prompt"], completions)
                ]
            )
        done = response_store.finished(run)
    records = [done[pid] for pid in mine["prompt_id"] if pid in done]
    return pd.DataFrame(records)
