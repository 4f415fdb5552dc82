"""An append-only JSONL file of finished responses: what makes generation resumable.

Every record is written and flushed to disk as soon as its batch completes. A run killed at
any point leaves whole lines (a torn last line is ignored), and a restarted run skips every
prompt already answered with the same model and generation settings.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fsku_kedro.hashing import json_hash

logger = logging.getLogger(__name__)


def fingerprint(model_name: str, settings: dict[str, Any]) -> str:
    """Identifies what produced a response; records from other models or settings are not reused."""
    return json_hash([model_name, settings])


class ResponseStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.skipped_lines = 0

    def finished(self, run_fingerprint: str, inputs: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """Records already on disk for this fingerprint, by prompt_id: the last one, or with ``inputs``
        the last one computed from the key's input where one was (a key asked in turn with two inputs
        keeps both records)."""
        done: dict[str, dict[str, Any]] = {}
        self.skipped_lines = 0
        if not self.path.exists():
            return done
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                try:
                    record = json.loads(line)
                    key = record["prompt_id"]
                    if record["fingerprint"] != run_fingerprint:
                        continue
                    if inputs is None or key not in done or record.get("input") == inputs.get(key) \
                            or done[key].get("input") != inputs.get(key):
                        done[key] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.skipped_lines += 1
                    logger.warning("%s: line %d is not a complete record; it will be regenerated", self.path, number)
        return done

    def complete(
        self,
        run_fingerprint: str,
        keys: list[str],
        compute: Callable[[list[str]], list[dict[str, Any]]],
        per_save: int,
        desc: str,
        unit: str = "it",
        inputs: dict[str, str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Every key's record for this fingerprint: those already on disk, and for the rest
        ``compute(keys)`` (one record body per key, in order), ``per_save`` keys at a time, each
        group appended as soon as it is computed, so a killed run loses at most one group.

        ``inputs`` (a hash of what each key's record is computed from) is for keys that do not name
        their content: each new record keeps its hash, and a stored record whose hash differs is
        computed again (one stored without a hash is reused)."""
        done = self.finished(run_fingerprint, inputs)
        if inputs:
            stale = [key for key in keys if key in done and done[key].get("input", inputs[key]) != inputs[key]]
            if stale:
                logger.info("%s: %d stored records were computed from other inputs; computed again", desc, len(stale))
            for key in stale:
                del done[key]
        todo = list(dict.fromkeys(key for key in keys if key not in done))
        if len(todo) < len(set(keys)):
            logger.info("%s: %d of %d already in %s", desc, len(set(keys)) - len(todo), len(set(keys)), self.path)
        with tqdm(total=len(todo), desc=desc, unit=unit) as bar:
            for start in range(0, len(todo), per_save):
                group = todo[start : start + per_save]
                records = [{"fingerprint": run_fingerprint, "prompt_id": key,
                            **({"input": inputs[key]} if inputs else {}), **body}
                           for key, body in zip(group, compute(group), strict=True)]
                self.append(records)
                done.update({record["prompt_id"]: record for record in records})
                bar.update(len(group))
        return done

    def append(self, records: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            if handle.tell() > 0 and not self._ends_with_newline():
                handle.write("\n")  # close a line torn by a kill
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"
