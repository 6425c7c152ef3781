"""closeflow on the real Temporal cluster, as `make test-cluster` and `make chaos` drive it: the
stack (or the dev server when the cluster cannot be built, said aloud), the supervisor's restarts
while a test runs, kill -9, and what reached the sandboxes against the send ledger."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devstack.cluster import ClusterError, build
from devstack.cluster_stack import ClusterStack
from tests.support.dev_stack import dev_env
from tests.support.eventually import eventually

TEND_SECONDS = 0.2


def cluster_available() -> bool:
    """Whether Temporal's server could be built (cached after the first time); when not, the
    exact error is printed and a warning raised, and callers run on the dev server instead."""
    try:
        build()
    except ClusterError as exc:
        warnings.warn(f"the Temporal cluster could not be built: {exc}", stacklevel=2)
        print(f"\nTEMPORAL CLUSTER UNAVAILABLE, running on the dev server instead:\n{exc}")
        return False
    return True


@contextlib.contextmanager
def cluster_stack(
    postgres_url: str,
    prefix: str,
    data_dir: Path,
    log: IO[str],
    env: dict[str, str] | None = None,
) -> Iterator[ClusterStack]:
    """A started ClusterStack with every database `<prefix>_*` (made fresh) on that server."""
    with ClusterStack(
        postgres_url,
        prefix,
        env={**dev_env(data_dir), **(env or {})},
        fresh=True,
        dev_server=not cluster_available(),
        output=log,
        ready_timeout=180.0,
    ) as stack:
        yield stack


@contextlib.asynccontextmanager
async def tended(stack: ClusterStack) -> AsyncIterator[None]:
    """The supervisor's restarts while the test runs (in this thread: children die with the
    thread that started them)."""

    async def tend() -> None:
        while True:
            stack.tend()
            await asyncio.sleep(TEND_SECONDS)

    task = asyncio.create_task(tend())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def kill(stack: ClusterStack, name: str, sig: signal.Signals) -> int:
    child = stack.child(name)
    assert child.process is not None and child.running(), f"{name} is not running"
    os.kill(child.process.pid, sig)
    return child.process.pid


def restarted(stack: ClusterStack, old_pids: dict[str, int]) -> bool:
    """Every named child runs again in a new process, and is ready."""
    for name, pid in old_pids.items():
        child = stack.child(name)
        if child.process is None or child.process.pid == pid or not child.is_ready:
            return False
    return True


async def all_up_again(stack: ClusterStack, old_pids: dict[str, int]) -> None:
    async def probe() -> bool:
        return restarted(stack, old_pids)

    await eventually(probe, f"{sorted(old_pids)} restarted and ready", timeout=120)


@dataclass
class Sent:
    """One prospect's sends: the ledger's (rows with a provider id) and what the sandboxes got."""

    ledger: list[dict[str, Any]]
    emails: list[dict[str, Any]]  # the mailbox's messages to the prospect
    texts: list[dict[str, Any]]  # the Twilio sandbox's outbound texts to the prospect
    sent: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.sent = [m for m in self.ledger if m["provider_id"]]

    def ledger_ids(self, channel: str) -> list[str]:
        return sorted(m["provider_id"] for m in self.sent if m["channel"] == channel)

    def email_ids(self) -> list[str]:
        return sorted(m["message_id"] for m in self.emails)

    def text_ids(self) -> list[str]:
        return sorted(t["sid"] for t in self.texts)

    def extra_emails(self) -> list[dict[str, Any]]:
        """Emails beyond one per ledger send: second copies, and any the ledger does not know."""
        return _extra(self.emails, "message_id", self.ledger_ids("email"))

    def extra_texts(self) -> list[dict[str, Any]]:
        return _extra(self.texts, "sid", self.ledger_ids("sms"))


def _extra(got: list[dict[str, Any]], key: str, ledger: list[str]) -> list[dict[str, Any]]:
    wanted = set(ledger)
    seen: set[str] = set()
    extra = []
    # oldest first: the first copy of a ledger send is the one that counts
    for item in sorted(got, key=lambda m: str(m.get("received_at") or m.get("accepted_at"))):
        if item[key] in wanted and item[key] not in seen:
            seen.add(item[key])
        else:
            extra.append(item)
    return extra


def outbound(texts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in texts if t.get("direction") != "inbound"]
