"""Where a run's time goes: seconds per node (from loading its first input to saving its last output),
in the order the nodes started, and the pipeline's total."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

NODE_TIMES_FILE = Path("logs") / "node_times.json"  # the latest run's table, for scripts
logger = logging.getLogger(__name__)  # conf/logging.yml prints it unwrapped


@dataclass
class NodeTimes:
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    spans: dict[str, list[float]] = field(default_factory=dict)  # node -> [first event, last event]
    failed: set[str] = field(default_factory=set)

    def mark(self, node: str, now: float | None = None) -> None:
        """An event of ``node`` (an input loaded, the node run, an output saved): widens its span."""
        now = time.perf_counter() if now is None else now
        span = self.spans.setdefault(node, [now, now])
        span[1] = max(span[1], now)

    def finish(self, now: float | None = None) -> None:
        self.finished = time.perf_counter() if now is None else now

    @property
    def total(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def rows(self) -> list[tuple[str, float]]:
        return [(name, end - start) for name, (start, end) in sorted(self.spans.items(), key=lambda kv: kv[1][0])]

    def table(self) -> str:
        """Seconds, share of the pipeline's time and node, one line each (narrow, so a log line holds it);
        the three slowest marked *."""
        rows, total = self.rows(), max(self.total, 1e-9)
        slowest = {name for name, _ in sorted(rows, key=lambda row: -row[1])[:3]}
        lines = [f"{'seconds':>8}  {'share':>6}  node"]
        for name, seconds in rows:
            mark = (" *" if name in slowest else "") + (" (failed)" if name in self.failed else "")
            lines.append(f"{seconds:>8.1f}  {seconds / total:>6.1%}  {name}{mark}")
        lines.append(f"{total:>8.1f}  {1:>6.1%}  the pipeline in all")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"pipeline_seconds": round(self.total, 2), "finished": self.finished is not None,
                "nodes": [{"node": name, "seconds": round(seconds, 2), "failed": name in self.failed}
                          for name, seconds in self.rows()]}

    def report(self, path: Path) -> None:
        """Logs the table and writes it as JSON to ``path``."""
        logger.info("Time per node (* the three slowest):\n%s", self.table())
        self.write(path)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
