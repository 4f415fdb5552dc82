"""The teacher's final hidden states on response tokens, computed once per pair row and reused.

Every loss that reads the teacher (all but seqkd) needs its last hidden states at the response
tokens of each row; the chunked loss projects them through the teacher's head. They depend only
on the teacher and the row's tokens, so they are kept per row, keyed by a hash of the row's token
ids and response mask, in a folder per teacher: each epoch, round and arm that meets the same row
with the same teacher reads them instead of running the teacher again. Rows are written as
safetensors shards while training goes on, so a killed run keeps what it computed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

logger = logging.getLogger(__name__)


def row_key(input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor) -> str:
    """A row's key: its unpadded token ids and which of them are response tokens."""
    kept = attention_mask.bool()
    payload = torch.stack([input_ids[kept].long(), response_mask[kept].long()]).cpu().numpy().tobytes()
    return hashlib.sha256(payload).hexdigest()[:32]


class TeacherSignalStore:
    """Per-row teacher hidden states on response tokens under ``root/<teacher key>``, as safetensors shards."""

    def __init__(self, root: str | Path, key: str, flush_every: int = 64):
        self.directory = Path(root) / key
        self.flush_every = flush_every
        self._rows: dict[str, torch.Tensor] = {}
        self._pending: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0
        # Shards are renamed into place whole; a kill mid-write leaves only a ``.partial`` file.
        for shard in sorted(self.directory.glob("*.safetensors")):
            with safe_open(str(shard), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open has no iteration protocol
                    self._rows[name] = handle.get_tensor(name)
        if self._rows:
            logger.info("Teacher signal: %d rows cached in %s", len(self._rows), self.directory)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def get(self, key: str) -> torch.Tensor:
        return self._rows[key]

    def put(self, key: str, hidden: torch.Tensor) -> None:
        row = hidden.detach().to("cpu").contiguous()
        self._rows[key] = self._pending[key] = row
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Writes the rows computed since the last flush as one new shard (renamed into place whole)."""
        if not self._pending:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}-{os.getpid()}"
        partial = self.directory / f"{name}.partial"
        save_file(self._pending, str(partial))
        partial.replace(self.directory / f"{name}.safetensors")
        self._pending = {}

    def hidden_states(self, teacher_forward, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      response_mask: torch.Tensor) -> torch.Tensor:
        """``[B, T-1, H]`` teacher hidden states, right at the response positions (``response_mask``,
        aligned with them) and zero elsewhere, which the loss never reads. Rows not yet cached are run
        through ``teacher_forward(input_ids, attention_mask)`` (its ``[b, T-1, H]`` output) together."""
        full_response = torch.cat([torch.zeros_like(response_mask[:, :1]), response_mask], dim=1)
        keys = [row_key(ids, attention, response)
                for ids, attention, response in zip(input_ids, attention_mask, full_response)]
        missing = [i for i, key in enumerate(keys) if key not in self._rows]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        computed = None
        if missing:
            index = torch.tensor(missing, device=input_ids.device)
            computed = teacher_forward(input_ids[index], attention_mask[index])
            for row, i in enumerate(missing):
                self.put(keys[i], computed[row][response_mask[i]])
        dtype = computed.dtype if computed is not None else self._rows[keys[0]].dtype
        size = computed.shape[-1] if computed is not None else self._rows[keys[0]].shape[-1]
        out = torch.zeros((*response_mask.shape, size), dtype=dtype, device=input_ids.device)
        for i, key in enumerate(keys):
            out[i][response_mask[i]] = self._rows[key].to(out.device)
        return out
