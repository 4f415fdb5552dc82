"""The per-node time table: spans from a node's first event to its last, in start order."""

from __future__ import annotations

import json

from fsku_kedro.run_timing import NodeTimes


def test_spans_table_and_record(tmp_path):
    times = NodeTimes(started=0.0)
    times.mark("load", 0.0)
    times.mark("load", 2.0)
    times.mark("train", 2.5)
    times.mark("train", 9.5)
    times.mark("score", 9.5)
    times.mark("score", 10.0)
    times.failed.add("score")
    times.write(tmp_path / "partial.json")  # as after each node: the table so far, not finished
    partial = json.loads((tmp_path / "partial.json").read_text(encoding="utf-8"))
    assert partial["finished"] is False and partial["pipeline_seconds"] > 0
    assert [row["node"] for row in partial["nodes"]] == ["load", "train", "score"]
    times.finish(10.0)

    assert times.rows() == [("load", 2.0), ("train", 7.0), ("score", 0.5)]
    lines = times.table().splitlines()
    assert lines[0].split() == ["seconds", "share", "node"]
    assert lines[2].split() == ["7.0", "70.0%", "train", "*"]
    assert lines[3].endswith("score * (failed)")
    assert lines[-1].split()[:2] == ["10.0", "100.0%"]

    times.write(tmp_path / "logs" / "node_times.json")
    record = json.loads((tmp_path / "logs" / "node_times.json").read_text(encoding="utf-8"))
    assert record["pipeline_seconds"] == 10.0 and record["finished"] is True
    assert [row["node"] for row in record["nodes"]] == ["load", "train", "score"]
    assert [row["failed"] for row in record["nodes"]] == [False, False, True]
