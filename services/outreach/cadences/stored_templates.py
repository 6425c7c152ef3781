"""Journeys that carry where their templates are, not the templates (issue 13).

A journey's input is held by Temporal (its history) and, while the journey is cached, by the
journeys worker, which keeps about five bytes for every byte of it: a cadence with 50 KB of
HTML cost each cached journey 340 KB against 96 KB without. With `journey_templates=stored`, a
journey's steps name their stored cadence version and position instead (`StoredStep`), and the
touch activity puts the templates back from outreach's own copy before it renders. A cadence
version never changes once saved, so the worker caches them for good.

An outreach worker of an earlier release does not know `StoredStep` and would render a stored
step's empty templates as an empty message (a journeys worker of an earlier release drops the
field, and the touch fails as a template error), so stored may go on only once every journeys and
outreach worker runs this release. The default, `auto`, asks Temporal which workers poll those
queues (shared/capabilities.py) and carries the templates inline until all of them say they know
stored steps (docs/operations.md, upgrading).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import replace
from weakref import WeakKeyDictionary

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from services.outreach.cadences import service
from shared.capabilities import ACTIVITIES, STORED_STEPS, WORKFLOWS, every_poller_can
from shared.contracts.errors import TEMPLATE_ERROR_CODE
from shared.contracts.journey import (
    CadenceSnapshot,
    CadenceStep,
    StepVariant,
    StoredStep,
    TouchRequest,
)
from shared.errors import AppError
from shared.settings import Settings
from shared.temporal import task_queues

log = logging.getLogger(__name__)

# the templates a worker keeps, in characters: every version in use when cadences are a few KB
# each, and 16 of the largest (a definition is at most CLOSEFLOW_MAX_BODY_BYTES, 1 MiB)
CACHED_CHARACTERS = 16 * 1024 * 1024


# how long `auto`'s answer holds: a worker of an earlier release that starts polling (a rollback)
# is seen within this, and a busy API asks Temporal twice a minute, not twice per journey
CHOICE_SECONDS = 60.0
# auto's answers per connection to Temporal and (journeys, outreach) queues: when it was asked,
# and the answer (shared by every start asking meanwhile)
_choices: WeakKeyDictionary[Client, dict[tuple[str, str], tuple[float, asyncio.Task[bool]]]] = (
    WeakKeyDictionary()
)


async def for_journey(
    snapshot: CadenceSnapshot, settings: Settings, client: Client
) -> CadenceSnapshot:
    """The cadence as a journey started (or moved to it) now carries it."""
    stored = await carries_stored(settings, client)
    return without_templates(snapshot) if stored else snapshot


async def carries_stored(settings: Settings, client: Client) -> bool:
    """Whether a journey started now carries where its templates are (`journey_templates`)."""
    if settings.journey_templates != "auto":
        return settings.journey_templates == "stored"
    queues = task_queues(settings)
    key = (queues.journeys, queues.outreach)
    asked = _choices.setdefault(client, {})
    found = asked.get(key)
    now = time.monotonic()
    if found is None or now - found[0] >= CHOICE_SECONDS:
        found = (now, asyncio.create_task(_every_worker_knows_stored_steps(client, *key)))
        asked[key] = found
    return await asyncio.shield(found[1])


async def _every_worker_knows_stored_steps(client: Client, journeys: str, outreach: str) -> bool:
    # the journeys worker hands the steps on (workflow tasks); outreach renders them (activities)
    queues = [(journeys, WORKFLOWS), (outreach, ACTIVITIES)]
    try:
        return await every_poller_can(client, STORED_STEPS, queues)
    except Exception as exc:  # Temporal away or the call refused: the safe side, until asked again
        log.warning("journeys carry their templates inline: no answer on the workers (%r)", exc)
        return False


def without_templates(snapshot: CadenceSnapshot) -> CadenceSnapshot:
    """What a journey needs to schedule and personalise its touches (channels, offsets,
    conditions, variant names and weights), each step naming where its templates are."""
    return replace(
        snapshot,
        steps=[
            replace(
                step,
                subject="",
                body="",
                html="",
                variants=[StepVariant(v.name, "", weight=v.weight) for v in step.variants],
                stored=StoredStep(snapshot.cadence_id, snapshot.version, position),
            )
            for position, step in enumerate(snapshot.steps)
        ],
    )


class StoredTemplates:
    """Puts a touch's stored templates back, from outreach's cadence versions."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._versions: OrderedDict[tuple[str, int], CadenceSnapshot] = OrderedDict()
        self._characters = 0

    async def fill(self, req: TouchRequest) -> TouchRequest:
        """The touch with every stored step's templates (of its chosen variant, if any)."""
        if not any(step.stored for step in req.steps):
            return req
        return replace(req, steps=[await self._filled(step) for step in req.steps])

    async def _filled(self, step: CadenceStep) -> CadenceStep:
        ref = step.stored
        if ref is None:
            return step
        version = await self._version(ref.cadence_id, ref.version)
        if not 0 <= ref.position < len(version.steps):
            raise _missing(ref.cadence_id, ref.version, "has no such step")
        kept = version.steps[ref.position]
        source: CadenceStep | StepVariant = kept
        if step.variant:
            named = [v for v in kept.variants if v.name == step.variant]
            if not named:
                raise _missing(
                    ref.cadence_id, ref.version, f"has no variant {step.variant!r} at this step"
                )
            source = named[0]
        return replace(step, subject=source.subject, body=source.body, html=source.html)

    async def _version(self, cadence_id: str, version: int) -> CadenceSnapshot:
        key = (cadence_id, version)
        found = self._versions.get(key)
        if found is None:
            async with self._sessions() as session:
                try:
                    found = await service.cadence_snapshot(session, cadence_id, version)
                except AppError as err:
                    if err.status != 404:
                        raise
                    raise _missing(cadence_id, version, "is not stored") from err
            self._versions[key] = found
            self._characters += template_characters(found)
            while self._characters > CACHED_CHARACTERS and len(self._versions) > 1:
                _, evicted = self._versions.popitem(last=False)
                self._characters -= template_characters(evicted)
        self._versions.move_to_end(key)
        return found


def template_characters(snapshot: CadenceSnapshot) -> int:
    """The length of every template of a cadence version, its variants' included."""
    parts: list[CadenceStep | StepVariant] = []
    for step in snapshot.steps:
        parts += [step, *step.variants]
    return sum(len(p.subject) + len(p.body) + len(p.html) for p in parts)


def _missing(cadence_id: str, version: int, what: str) -> AppError:
    """A template that cannot be found fails the touch for good, as one that cannot render
    does: the journey marks the step failed and the rep gets a task (retrying finds nothing
    more)."""
    message = f"cadence {cadence_id} version {version} {what}"
    return AppError(422, TEMPLATE_ERROR_CODE, message, [{"problem": message}])
