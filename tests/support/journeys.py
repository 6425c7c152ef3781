"""The one stand-in journey of the tests that check what a service tells the journey."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue


@workflow.defn(name="ProspectJourney")
class RecordingJourney:
    """Stands in for the journey: records each signal (name and payload), in order."""

    def __init__(self) -> None:
        self.signals: list[dict[str, Any]] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal(dynamic=True)
    def any_signal(self, name: str, args: Sequence[RawValue]) -> None:
        payload = workflow.payload_converter().from_payload(args[0].payload, dict) if args else None
        self.signals.append({"name": name, "payload": payload})

    @workflow.query(name="signals")
    def recorded(self) -> list[dict[str, Any]]:
        return self.signals
