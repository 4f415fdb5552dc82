"""Printing benchmark results: Markdown tables and the target verdict (the exit code)."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def verdict(met: bool, description: str) -> int:
    """Print whether the target ``description`` was met; return the script's exit code."""
    print(("target met: " if met else "TARGET MISSED: ") + description)
    return 0 if met else 1
