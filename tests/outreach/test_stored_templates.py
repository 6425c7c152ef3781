"""The touch activity puts a stored step's templates back (issue 13,
services/outreach/cadences/stored_templates.py): the journey chose the variant, outreach renders
the stored version's text of it; a version it does not have fails the touch as a template that
cannot render does (not retried, nothing sent). With `auto` (the default), a journey carries them
stored only while every worker Temporal sees polling knows stored steps."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from closeflow.worker import build_workers
from services.outreach.cadences import service, stored_templates
from services.outreach.cadences.stored_templates import (
    StoredTemplates,
    for_journey,
    template_characters,
    without_templates,
)
from shared.contracts.errors import TEMPLATE_ERROR
from shared.contracts.journey import (
    CadenceSnapshot,
    CadenceStep,
    StepVariant,
    StoredStep,
    TouchRequest,
    journey_id,
)
from shared.contracts.plan import personalise, touch_groups
from tests.support.eventually import eventually
from tests.support.journeys import RecordingJourney
from tests.support.scenarios import fast_cadence
from tests.support.sending import SendingRig, contact
from tests.support.settings import make_settings


def variants(marker: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "subject": f"{name} for {{{{ first_name }}}}",
            "body": f"{name} body {marker}",
            "html": f"<p>{name} {marker}</p>",
            "weight": weight,
        }
        for name, weight in (("short", 1), ("long", 3))
    ]


def snapshot_with_variants() -> CadenceSnapshot:
    step = CadenceStep("email", 0, "unused", "unused", html="<p>unused</p>")
    step.variants = [
        StepVariant(v["name"], v["body"], v["subject"], v["weight"], v["html"])
        for v in variants("m")
    ]
    text = CadenceStep("sms", 0, "Hi {{ first_name }}")
    later = CadenceStep("email", 3600, "Later", "Again", condition="previous_email_delivered")
    return CadenceSnapshot("cad", 4, "Outbound", [step, text, later])


def test_a_journey_without_templates_plans_and_personalises_as_with_them() -> None:
    full = snapshot_with_variants()
    lean = without_templates(full)
    for kept, step in zip(full.steps, lean.steps, strict=True):
        assert (step.subject, step.body, step.html) == ("", "", "")
        assert [(v.name, v.weight, v.body, v.subject, v.html) for v in step.variants] == [
            (v.name, v.weight, "", "", "") for v in kept.variants
        ]
        plan = ("channel", "offset_seconds", "business_days", "condition")
        assert [getattr(step, f) for f in plan] == [getattr(kept, f) for f in plan]
    assert [s.stored for s in lean.steps] == [StoredStep("cad", 4, p) for p in range(3)]
    assert dataclasses.replace(lean, steps=full.steps) == full
    chosen = set()
    for n in range(300):
        pid = f"p{n}"
        groups = zip(touch_groups(full.steps), touch_groups(lean.steps), strict=True)
        for index, (with_them, without) in enumerate(groups):
            ours = personalise(pid, index, without)
            assert [s.variant for s in ours] == [
                s.variant for s in personalise(pid, index, with_them)
            ]
            chosen.update(s.variant for s in ours)
    assert chosen == {"", "short", "long"}


async def test_a_stored_step_goes_out_with_its_versions_templates(
    sending_rig: SendingRig,
) -> None:
    marker = uuid.uuid4().hex
    spec = fast_cadence()
    spec["steps"][0]["variants"] = variants(marker)
    async with sending_rig() as r:
        created = (await r.api.post("/cadences", json=spec)).json()
        spec["steps"][0]["variants"] = variants("the next version")
        assert (await r.api.put(f"/cadences/{created['id']}", json=spec)).status_code == 200
        async with r.sessions() as s:
            v1 = await service.cadence_snapshot(s, created["id"], 1)
        c = contact()
        [first] = personalise(c.prospect_id, 0, without_templates(v1).steps[:1])
        assert first.variant in ("short", "long") and not first.body
        req = TouchRequest(journey_id(c.prospect_id), "step-0", "cadence", c, steps=[first])
        assert [o.status for o in (await r.send(req)).outcomes] == ["sent"]
        [mail] = [m.to_json() for m in r.sb.mailbox.list(to=c.email)]
        assert mail["subject"] == f"{first.variant} for Ada"
        assert mail["text"].startswith(f"{first.variant} body {marker}")
        assert f"<p>{first.variant} {marker}</p>" in mail["html"]
        [row] = await r.ledger(c)
        assert (row.variant, row.body) == (first.variant, f"{first.variant} body {marker}")


NOT_SENDABLE = {
    "unknown cadence": "is not stored",
    "no such step": "has no such step",
    # what a journeys worker of an earlier release makes of a stored step: `stored` dropped
    "neither text nor reference": "the step carries no template",
}


@pytest.mark.parametrize("ref", list(NOT_SENDABLE))
async def test_a_step_without_a_template_fails_as_a_template_error(
    sending_rig: SendingRig, ref: str
) -> None:
    async with sending_rig() as r:
        created = (await r.api.post("/cadences", json=fast_cadence())).json()
        stored = {
            "unknown cadence": StoredStep("cad-nobody-saved", 1, 0),
            "no such step": StoredStep(created["id"], 1, 7),
        }.get(ref)
        c = contact()
        step = CadenceStep("email", 0, "", stored=stored)
        req = TouchRequest(journey_id(c.prospect_id), "step-0", "cadence", c, steps=[step])
        with pytest.raises(WorkflowFailureError) as failed:
            await r.send(req)
        cause = failed.value.cause
        assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
        assert cause.cause.type == TEMPLATE_ERROR and cause.cause.non_retryable
        assert NOT_SENDABLE[ref] in cause.cause.message
        assert r.sb.mailbox.list(to=c.email) == []


async def test_a_worker_keeps_a_bounded_amount_of_templates(
    sending_rig: SendingRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache of stored versions is bounded by their templates' size, the latest kept."""
    async with sending_rig() as r:
        refs = []
        for _ in range(3):
            created = (await r.api.post("/cadences", json=fast_cadence())).json()
            refs.append(StoredStep(created["id"], 1, 0))
        async with r.sessions() as s:
            one = template_characters(await service.cadence_snapshot(s, refs[0].cadence_id, 1))
        monkeypatch.setattr(stored_templates, "CACHED_CHARACTERS", 2 * one)
        templates = StoredTemplates(r.sessions)
        c = contact()
        for ref in refs:
            req = TouchRequest(
                journey_id(c.prospect_id),
                "step-0",
                "cadence",
                c,
                steps=[CadenceStep("email", 0, "", stored=ref)],
            )
            [step] = (await templates.fill(req)).steps
            assert step.subject == "Quick question, {{ first_name }}"
        kept = [key for key, _ in templates._versions.items()]
        assert kept == [(ref.cadence_id, 1) for ref in refs[1:]]


@activity.defn(name="earlier.release")
async def earlier_activity() -> None:
    return None


@pytest.mark.parametrize("queue", ["journeys", "outreach"])
async def test_auto_carries_stored_templates_only_while_every_polling_worker_knows_them(
    tmp_path: Path, temporal_local: WorkflowEnvironment, queue_prefix: str, queue: str
) -> None:
    """What Temporal tells of the pollers decides: none yet, inline; only this release's workers,
    stored; a worker of an earlier release (the SDK's default identity) on the journeys queue's
    workflow tasks or outreach's activities, inline again."""
    settings = make_settings(tmp_path, task_queue_prefix=queue_prefix)
    assert settings.journey_templates == "auto"
    full = snapshot_with_variants()

    async def carries(stored: bool) -> bool:
        # a new connection each time: auto keeps an answer a minute per connection
        lean = await for_journey(full, settings, Client(**temporal_local.client.config()))
        return (lean == without_templates(full)) if stored else (lean == full)

    assert await carries(stored=False), "no worker polls yet: inline"
    client = temporal_local.client
    async with contextlib.AsyncExitStack() as stack:
        for worker in await build_workers(client, settings, ["journeys", "outreach"], stack):
            await stack.enter_async_context(worker)
        await eventually(lambda: carries(stored=True), "stored once this release's workers poll")
        # its own connection, as another process has (the SDK keeps one worker per queue and type
        # on a connection)
        elsewhere = await Client.connect(client.service_client.config.target_host)
        earlier = Worker(
            elsewhere,
            task_queue=settings.task_queue(queue),
            **({"workflows": [RecordingJourney]} if queue == "journeys" else {}),
            **({"activities": [earlier_activity]} if queue == "outreach" else {}),
        )
        async with earlier:
            await eventually(lambda: carries(stored=False), f"inline while {queue} has an old one")
