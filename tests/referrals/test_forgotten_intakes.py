"""The intake workflows of referrals forgotten without them (migration
0010_forget_erased_referrals deleted the rows, and could not reach Temporal) leave Temporal
when the referrals app starts, their data keys shredded (Temporal's backups keep the histories);
an intake whose referral is stored stays, and its key."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from services.referrals.intakes import INTAKE_WORKFLOW
from services.referrals.models import Referral
from shared.codec import (
    KeyRing,
    PayloadKeyErased,
    new_master_key,
    parse_master_keys,
    referral_scope,
)
from shared.contracts.journey import referral_intake_id
from shared.db import create_engine, session_factory
from tests.support.apps import ServiceApp
from tests.support.eventually import eventually
from tests.support.referrals import an_ask


async def test_the_intakes_of_forgotten_referrals_leave_temporal_at_start(
    service_app: ServiceApp,
    database_urls: dict[str, str],
    temporal_local: WorkflowEnvironment,
    queue_prefix: str,
) -> None:
    client = temporal_local.client
    kept, forgotten, running = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    keys = new_master_key("k1")
    await service_app("prospecting", payload_master_keys=keys)  # the keyring's table
    ring = KeyRing(parse_master_keys([keys]), database_urls["prospecting"])
    made = {r: await ring.data_key(referral_scope(r), create=True) for r in (kept, forgotten)}
    engine = create_engine(database_urls["referrals"])
    try:
        async with session_factory(engine)() as session:
            session.add(an_ask())
            await session.flush()
            session.add(Referral(id=kept, ask_id="ask1", referrer_prospect_id="c", first_name="R"))
            await session.commit()
    finally:
        await engine.dispose()
    # the forgotten one ended (it failed: the person had been erased, prospecting refused
    # them; terminated here), its input, the person as the client named them, in its history
    for referral_id in (kept, forgotten, running):
        await client.start_workflow(
            INTAKE_WORKFLOW,
            {"referral_id": referral_id, "person": {"email": "grace@example.com"}},
            id=referral_intake_id(referral_id),
            task_queue=f"{queue_prefix}journeys",
        )
    await client.get_workflow_handle(referral_intake_id(forgotten)).terminate("refused")
    listed = f"WorkflowType = '{INTAKE_WORKFLOW}' AND TaskQueue = '{queue_prefix}journeys'"

    async def all_listed() -> bool:
        statuses = [w.status async for w in client.list_workflows(listed)]
        return sorted(s.name for s in statuses if s) == ["RUNNING", "RUNNING", "TERMINATED"]

    await eventually(all_listed, "the intakes listed as they are")

    await service_app("referrals", task_queue_prefix=queue_prefix, payload_master_keys=keys)

    async def forgotten_gone() -> bool:
        try:
            await client.get_workflow_handle(referral_intake_id(forgotten)).describe()
        except RPCError as err:
            return err.status == RPCStatusCode.NOT_FOUND
        return False

    # the server deletes a closed workflow's history in a task of its own, 20 s later or more
    await eventually(forgotten_gone, "the forgotten referral's intake deleted", timeout=120)
    # one stored stays; one still running stays until it ends (gone by the next pass)
    for referral_id in (kept, running):
        described = await client.get_workflow_handle(referral_intake_id(referral_id)).describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
    fresh = KeyRing(parse_master_keys([keys]), database_urls["prospecting"])
    with pytest.raises(PayloadKeyErased):
        await fresh.data_key(referral_scope(forgotten), create=False)
    assert await fresh.data_key(referral_scope(kept), create=False) == made[kept]
    for keyring in (ring, fresh):
        await keyring.aclose()
