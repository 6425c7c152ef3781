"""What the storms share: their size (STORM_N) and the table each prints."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest


def storm_n(default: int = 1_000) -> int:
    """STORM_N: deliveries (or races) per storm; `make storms` runs the full 10,000."""
    return int(os.environ.get("STORM_N", str(default)))


def table(title: str, head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in head], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = [f"## {title}", ""]
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def show(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Printed whatever pytest's capture says: the table is what the storm is run for."""
    with capsys.disabled():
        print(f"\n{text}\n", flush=True)
    out = os.environ.get("STORM_REPORT")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(text + "\n\n")
