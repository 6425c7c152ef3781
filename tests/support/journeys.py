"""The one stand-in journey of the tests that check what a service tells the journey."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

from shared.contracts.journey import JourneyState
from shared.contracts.names import Query, Sig


@workflow.defn(name="ProspectJourney")
class RecordingJourney:
    """Stands in for the journey: records each signal (name and payload), in order. Started with
    or without an input (the services start the real one with one), which it ignores."""

    def __init__(self) -> None:
        self.signals: list[dict[str, Any]] = []
        self.stage = ""

    @workflow.run
    async def run(self, _input: Any = None) -> None:
        # a test may start it at a stage of its choice ({"stage": "contacting"}), for what
        # reads the journey's stage (the migration's dry run)
        if isinstance(_input, dict):
            self.stage = str(_input.get("stage", ""))
        await workflow.wait_condition(lambda: False)

    @workflow.signal(dynamic=True)
    def any_signal(self, name: str, args: Sequence[RawValue]) -> None:
        payload = workflow.payload_converter().from_payload(args[0].payload, dict) if args else None
        self.signals.append({"name": name, "payload": payload})

    @workflow.query(name="signals")
    def recorded(self) -> list[dict[str, Any]]:
        return self.signals

    @workflow.query(name=Query.STATE)
    def state(self) -> JourneyState:
        """The stage it was started at (none by default) and no deal of its own; signed by the
        last rep it was told of (rep_assigned), on the last cadence version it was moved to
        (migrate_cadence; 1 before) unless past contacting, as the journey is."""
        reps = self._payloads(Sig.REP_ASSIGNED)
        rep_id = reps[-1]["rep_id"] if reps else None
        # past contacting a journey keeps its version (workflows/journey/signals.py)
        moves = self._payloads(Sig.MIGRATE_CADENCE) if self.stage in ("", "contacting") else []
        version = int(moves[-1]["version"]) if moves else 1
        return JourneyState(
            stage=self.stage,
            next_step=0,
            deal_id=None,
            finished=False,
            cadence_version=version,
            rep_id=rep_id,
        )

    @workflow.query(name="recorded")
    def replies_and_stops(self) -> dict[str, list[Any]]:
        """The replies and the stops it was told about (what the inbox and reply tests check)."""
        return {
            "replies": self._payloads(Sig.REPLY_RECEIVED),
            "stops": self._payloads(Sig.STOP_CADENCE),
        }

    def _payloads(self, name: str) -> list[Any]:
        return [s["payload"] for s in self.signals if s["name"] == name]
