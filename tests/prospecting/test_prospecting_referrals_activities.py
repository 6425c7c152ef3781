"""Prospecting and referrals activities: called by name through real workers, and one by one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.prospecting import activities as prospecting_activities
from services.prospecting import schemas as prospecting_schemas
from services.prospecting import service as prospecting
from services.prospecting.activities import ProspectingActivities
from services.prospecting.app import create_app as create_prospecting_app
from services.prospecting.models import Prospect, StageHistory
from services.referrals import activities as referrals_activities
from services.referrals import schemas as referrals_schemas
from services.referrals import service as referrals
from services.referrals.activities import ReferralsActivities
from services.referrals.models import Referral
from shared.contracts.errors import INVALID_INPUT, NOT_FOUND
from shared.contracts.journey import (
    Contact,
    CreateReferredProspect,
    LinkReferral,
    ReferralAskRequest,
    ReferralIntakeInput,
    ReferredPerson,
    StageChange,
)
from shared.contracts.names import Act
from shared.db import create_engine, session_factory
from shared.migrations import upgrade
from shared.settings import Settings
from shared.temporal import task_queues
from shared.timezones import prospect_zone
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH, make_settings

ACTIVITY_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name="IntakeProbe")
class IntakeProbe:
    """Calls the activities by name on their services' queues, the way the journeys worker does."""

    @workflow.run
    async def run(self, data: ReferralIntakeInput) -> Contact:
        contact = await workflow.execute_activity(
            Act.CREATE_REFERRED_PROSPECT,
            CreateReferredProspect(
                data.referral_id, data.person, data.referrer_prospect_id, data.rep_id
            ),
            task_queue=data.queues.prospecting,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            result_type=Contact,
        )
        await workflow.execute_activity(
            Act.LINK_REFERRAL,
            LinkReferral(data.referral_id, contact.prospect_id),
            task_queue=data.queues.referrals,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
        )
        await workflow.execute_activity(
            Act.RECORD_STAGE,
            StageChange(
                key=f"{workflow.info().workflow_id}:qualifying",
                prospect_id=contact.prospect_id,
                from_stage="prospecting",
                to_stage="qualifying",
                cause="referral",
                at=workflow.now().isoformat(),
            ),
            task_queue=data.queues.prospecting,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=2),
        )
        return contact


@dataclass
class Dbs:
    settings: Settings
    prospecting: async_sessionmaker[AsyncSession]
    referrals: async_sessionmaker[AsyncSession]

    @property
    def prospecting_acts(self) -> ProspectingActivities:
        return ProspectingActivities(self.prospecting)

    @property
    def referrals_acts(self) -> ReferralsActivities:
        return ReferralsActivities(self.referrals, self.settings.referrals_public_url)

    async def rep(self, name: str) -> str:
        async with self.prospecting() as session:
            body = prospecting_schemas.RepCreate(name=name, email=f"{name}@example.com")
            rep = await prospecting.create_rep(session, body)
            await session.commit()
            return rep.id

    async def prospect(self, **fields: str) -> Prospect:
        async with self.prospecting() as session:
            body = prospecting_schemas.ProspectCreate(first_name="Client", **fields)  # type: ignore[arg-type]
            pepper = self.settings.erasure_pepper.get_secret_value()
            prospect = await prospecting.create_prospect(session, body, pepper, [])
            await session.commit()
            return prospect

    async def load(self, prospect_id: str) -> Prospect:
        async with self.prospecting() as session:
            return await prospecting.get_prospect(session, prospect_id)

    async def count_prospects(self) -> int:
        async with self.prospecting() as session:
            return int(await session.scalar(select(func.count()).select_from(Prospect)) or 0)

    async def history(self, prospect_id: str) -> list[tuple[str | None, str, str]]:
        async with self.prospecting() as session:
            rows = await prospecting.stage_history(session, prospect_id)
            return [(r.from_stage, r.to_stage, r.cause) for r in rows]

    async def referral(self, client_id: str, rep_id: str | None, **person: str) -> Referral:
        request = ReferralAskRequest(client_id, f"journey-{client_id}", "Grace", rep_id, "cad1")
        made = await self.referrals_acts.create_referral_ask(request)
        async with self.referrals() as session:
            ask = await referrals.get_ask(session, made.ask_id)
            (referral,) = await referrals.add_referrals(
                session, ask, [referrals_schemas.ReferredPersonIn.model_validate(person)]
            )
            await session.commit()
            return referral

    async def stored_referral(self, referral_id: str) -> Referral:
        async with self.referrals() as session:
            found = await session.get(Referral, referral_id)
            assert found is not None
            return found


@pytest.fixture
async def dbs(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Dbs]:
    settings = make_settings(tmp_path, database_urls, referrals_public_url="https://r.example.com")
    for name in ("prospecting", "referrals"):
        await asyncio.to_thread(upgrade, settings, name)
    engines = [create_engine(settings.database_url(n)) for n in ("prospecting", "referrals")]
    yield Dbs(settings, *(session_factory(e) for e in engines))
    for engine in engines:
        await engine.dispose()


def person(first_name: str = "Alan", **fields: str) -> ReferredPerson:
    return ReferredPerson(first_name=first_name, **fields)  # type: ignore[arg-type]


# --- through real workers -----------------------------------------------------------------------


async def test_intake_activities_by_name_through_workers(
    dbs: Dbs, temporal_local: WorkflowEnvironment, queue_prefix: str
) -> None:
    settings = dbs.settings.model_copy(update={"task_queue_prefix": queue_prefix})
    queues = task_queues(settings)
    client = temporal_local.client
    rep_id = await dbs.rep("rita")
    referrer = await dbs.prospect(email="client@example.com")
    referral = await dbs.referral(referrer.id, rep_id, first_name="Alan", email="Alan@Example.com")
    async with dbs.referrals() as session:
        ask = await referrals.get_ask(session, referral.ask_id)
    intake = referrals.intake_input(referral, ask, queues)

    workers = [
        Worker(
            client,
            task_queue=queues.prospecting,
            activities=prospecting_activities.activities_for(settings, dbs.prospecting),
        ),
        Worker(
            client,
            task_queue=queues.referrals,
            activities=referrals_activities.activities_for(settings, dbs.referrals),
        ),
        Worker(
            client,
            task_queue=queues.journeys,
            workflows=[IntakeProbe],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
    ]
    async with workers[0], workers[1], workers[2]:
        runs = []
        for _ in range(2):  # the second run is a replayed intake: nothing new may appear
            runs.append(
                await client.execute_workflow(
                    IntakeProbe.run,
                    intake,
                    id=f"probe-{uuid.uuid4().hex}",
                    task_queue=queues.journeys,
                    execution_timeout=timedelta(seconds=60),
                )
            )
    contact = runs[0]
    assert runs[1] == contact
    assert contact == Contact(
        prospect_id=contact.prospect_id,
        first_name="Alan",
        email="alan@example.com",
        source="referral",
        rep_id=rep_id,
        rep_name="rita",
        rep_email="rita@example.com",
        zone="UTC",  # no zone, no phone: the conservative default (shared.timezones)
    )
    created = await dbs.load(contact.prospect_id)
    assert (created.referrer_prospect_id, created.referral_id) == (referrer.id, referral.id)
    assert created.stage == "qualifying"
    assert await dbs.count_prospects() == 2
    assert await dbs.history(contact.prospect_id) == [
        (None, "prospecting", "created"),
        ("prospecting", "qualifying", "referral"),
        ("prospecting", "qualifying", "referral"),  # each probe run has its own key
    ]
    stored = await dbs.stored_referral(referral.id)
    assert (stored.status, stored.prospect_id) == ("prospect_created", contact.prospect_id)


# --- prospecting activities ---------------------------------------------------------------------


async def test_record_stage_is_idempotent_per_key(dbs: Dbs) -> None:
    prospect = await dbs.prospect(email="p@example.com")
    env = ActivityEnvironment()
    change = StageChange(
        "j:1", prospect.id, "prospecting", "contacting", "enrolled", "2030-01-01T00:00:00Z"
    )
    later = StageChange(
        "j:2", prospect.id, "contacting", "nurture", "silence", "2030-02-01T00:00:00Z"
    )
    for step in (change, later, change):
        await env.run(dbs.prospecting_acts.record_stage, step)
    assert (await dbs.load(prospect.id)).stage == "nurture"  # the late retry did not regress it
    async with dbs.prospecting() as session:
        count = await session.scalar(
            select(func.count()).select_from(StageHistory).where(StageHistory.key == "j:1")
        )
    assert count == 1
    assert len(await dbs.history(prospect.id)) == 3


@pytest.mark.parametrize(
    ("prospect_id", "to_stage", "kind", "code"),
    [
        ("nobody", "contacting", NOT_FOUND, "prospect_not_found"),
        (None, "sleeping", INVALID_INPUT, "validation_error"),
    ],
)
async def test_record_stage_rejects_bad_input_without_retrying(
    dbs: Dbs, prospect_id: str | None, to_stage: str, kind: str, code: str
) -> None:
    pid = prospect_id or (await dbs.prospect(email="q@example.com")).id
    change = StageChange("k", pid, "prospecting", to_stage, "x", "2030-01-01T00:00:00+00:00")
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(dbs.prospecting_acts.record_stage, change)
    assert raised.value.non_retryable and raised.value.type == kind
    assert raised.value.details[0]["code"] == code


async def test_create_referred_prospect_is_idempotent_on_referral_id(dbs: Dbs) -> None:
    rep_id = await dbs.rep("rita")
    referrer = await dbs.prospect(email="client@example.com")
    request = CreateReferredProspect(
        "ref1", person(phone="+1 415 555 0100", company="Bletchley"), referrer.id, rep_id
    )
    env = ActivityEnvironment()
    first = await env.run(dbs.prospecting_acts.create_referred_prospect, request)
    again = await env.run(dbs.prospecting_acts.create_referred_prospect, request)
    assert again == first
    assert (first.phone, first.company, first.source) == ("+14155550100", "Bletchley", "referral")
    assert (first.rep_id, first.rep_name) == (rep_id, "rita")
    assert await dbs.count_prospects() == 2
    assert await dbs.history(first.prospect_id) == [(None, "prospecting", "created")]


async def test_a_known_person_is_attributed_not_copied(dbs: Dbs) -> None:
    referrer = await dbs.prospect(email="client@example.com")
    known = await dbs.prospect(email="alan@example.com", phone="+14155552671")
    env = ActivityEnvironment()
    by_email = CreateReferredProspect("ref1", person(email="ALAN@example.com"), referrer.id, None)
    contact = await env.run(dbs.prospecting_acts.create_referred_prospect, by_email)
    assert contact.prospect_id == known.id and contact.source == "cold"
    attributed = await dbs.load(known.id)
    assert (attributed.referrer_prospect_id, attributed.referral_id) == (referrer.id, "ref1")

    # Referred again by someone else (matched on phone): the first attribution stays.
    other = await dbs.prospect(email="other@example.com")
    by_phone = CreateReferredProspect("ref2", person(phone="+1 (415) 555-2671"), other.id, None)
    contact = await env.run(dbs.prospecting_acts.create_referred_prospect, by_phone)
    assert contact.prospect_id == known.id
    kept = await dbs.load(known.id)
    assert (kept.referrer_prospect_id, kept.referral_id) == (referrer.id, "ref1")
    assert await dbs.count_prospects() == 3


async def test_referred_prospect_without_rep_gets_the_next_rep(dbs: Dbs) -> None:
    reps = [await dbs.rep(name) for name in ("ann", "ben")]
    referrer = await dbs.prospect(email="client@example.com")  # gets ann
    request = CreateReferredProspect("ref1", person(email="x@example.com"), referrer.id, None)
    contact = await ActivityEnvironment().run(
        dbs.prospecting_acts.create_referred_prospect, request
    )
    assert contact.rep_id == reps[1]


async def test_invalid_referred_person_fails_without_retrying(dbs: Dbs) -> None:
    request = CreateReferredProspect("ref1", person(email="nope"), "client", None)
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(dbs.prospecting_acts.create_referred_prospect, request)
    assert raised.value.non_retryable
    assert await dbs.count_prospects() == 0


async def test_prospect_json_holds_everything_a_contact_needs(
    dbs: Dbs, temporal_local: WorkflowEnvironment
) -> None:
    """Outreach builds its Contact from GET /prospects/{id}: it must match the activity's."""
    rep_id = await dbs.rep("rita")
    referrer = await dbs.prospect(email="client@example.com")
    request = CreateReferredProspect(
        "ref1",
        person(last_name="Turing", email="a@example.com", title="Dr", timezone="Europe/London"),
        referrer.id,
        rep_id,
    )
    expected = await ActivityEnvironment().run(
        dbs.prospecting_acts.create_referred_prospect, request
    )

    app = create_prospecting_app(dbs.settings, temporal_client=temporal_local.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=transport, base_url="http://t", headers=AUTH
        ) as http:
            data = (await http.get(f"/prospects/{expected.prospect_id}")).json()
    rep = data["rep"]
    built = Contact(
        prospect_id=data["id"],
        **{k: data[k] for k in ("first_name", "last_name", "email", "phone", "company", "title")},
        timezone=data["timezone"],
        source=data["source"],
        rep_id=rep["id"],
        rep_name=rep["name"],
        rep_email=rep["email"],
        rep_phone=rep["phone"],
        zone=prospect_zone(data["timezone"], data["phone"]).name,
    )
    assert built == expected
    loaded = await dbs.load(expected.prospect_id)
    assert prospecting.contact_from_prospect(loaded, loaded.rep) == expected


# --- referrals activities -----------------------------------------------------------------------


async def test_referral_ask_is_idempotent_per_journey(dbs: Dbs) -> None:
    env = ActivityEnvironment()
    request = ReferralAskRequest("client", "journey-client", "Grace", "rep1", "cad1")
    first = await env.run(dbs.referrals_acts.create_referral_ask, request)
    again = await env.run(dbs.referrals_acts.create_referral_ask, request)
    assert again == first
    assert first.link.startswith("https://r.example.com/r/")
    other = await env.run(
        dbs.referrals_acts.create_referral_ask,
        ReferralAskRequest("client", "journey-other", "Grace", "rep1", "cad1"),
    )
    assert other.ask_id != first.ask_id and other.link != first.link


async def test_link_referral_is_idempotent_and_rejects_unknown_referrals(dbs: Dbs) -> None:
    referral = await dbs.referral("client", None, first_name="Alan", email="alan@example.com")
    env = ActivityEnvironment()
    for _ in range(2):
        await env.run(dbs.referrals_acts.link_referral, LinkReferral(referral.id, "p1"))
    stored = await dbs.stored_referral(referral.id)
    assert (stored.status, stored.prospect_id) == ("prospect_created", "p1")
    with pytest.raises(ApplicationError) as raised:
        await env.run(dbs.referrals_acts.link_referral, LinkReferral("nope", "p1"))
    assert raised.value.non_retryable and raised.value.type == NOT_FOUND
    assert raised.value.details[0]["code"] == "referral_not_found"
