"""`closeflow import FILE`: stream a file to POST /imports with a progress bar on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import httpx

CHUNK = 64 * 1024
CONTENT_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson"}


class Progress:
    """A one-line bar redrawn in place (at most ~10 times a second)."""

    def __init__(self, total: int, out: TextIO, width: int = 30) -> None:
        self.total, self.out, self.width = max(total, 1), out, width
        self.done = 0
        self.started = self.drawn = time.monotonic()

    def advance(self, n: int, *, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not force and now - self.drawn < 0.1:
            return
        self.drawn = now
        share = min(self.done / self.total, 1.0)
        bar = "#" * int(share * self.width)
        rate = self.done / max(now - self.started, 1e-9) / 1e6
        self.out.write(
            f"\r[{bar:<{self.width}}] {share:6.1%} {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
            f" {rate:.1f} MB/s"
        )
        self.out.flush()

    def finish(self) -> None:
        self.advance(0, force=True)
        self.out.write("\n")


def format_for(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    return "ndjson" if path.suffix.lower() in (".ndjson", ".jsonl") else "csv"


async def upload(
    path: Path,
    *,
    url: str,
    api_key: str,
    fmt: str | None = None,
    err: TextIO = sys.stderr,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Send the file in chunks (never all of it in memory); returns the import report."""
    progress = Progress(path.stat().st_size, err)

    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                progress.advance(len(chunk))
                yield chunk

    headers = {"X-API-Key": api_key, "Content-Type": CONTENT_TYPES[format_for(path, fmt)]}
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=None) as client:
        resp = await client.post("/imports", content=body(), headers=headers)
    progress.finish()
    resp.raise_for_status()
    report: dict[str, Any] = resp.json()
    return report


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"import {report['id']}: {report['status']}"
        + (f" ({report['error']})" if report.get("error") else ""),
        "rows {rows}, created {created}, merged {merged}, unchanged {unchanged}, "
        "refused {refused}".format(**report),
    ]
    lines += [f"  line {r['line']}: {r['reason']}" for r in report.get("refusals", [])[:20]]
    if report["refused"] > 20:
        lines.append(f"  ... GET /imports/{report['id']} lists all {report['refused']}")
    return "\n".join(lines)
