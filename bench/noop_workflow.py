"""The baseline: a workflow that does nothing (its own module, so the sandbox imports little)."""

from __future__ import annotations

from temporalio import workflow


@workflow.defn(name="BenchNoOp")
class NoOp:
    @workflow.run
    async def run(self) -> None:
        return None
