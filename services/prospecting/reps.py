"""Reps change (issue 10): PATCH /reps/{id} edits a rep (name, email, phone, manager, their
capacity and territories in the assignment rules) and deactivates or reactivates them.

A deactivated rep is in no assignment pool from then on, and their prospects whose journey is
still going (open, or won and asked for referrals) move to other reps by the assignment rules,
each like a reassignment (PATCH /prospects/{id}): outreach moves the open tasks and tells the
journey, deals moves the open deals, referrals the referral asks, all through the outbox. One
whose journey was over stays theirs until they come back (come_back: enrolled again, a late
reply, a reopened deal), then moves the same way. A prospect no active rep has room for is left
unassigned (`assignment_note` says why) and gets a rep when a place comes free, as any waiting
prospect does. The open tasks that sit with them as the assignee (a manager's escalations about
their reps' prospects) move to their own manager when that manager is active (outreach, through
the outbox); otherwise they stay, and the answer says so. Deals hears of every deactivation and
reactivation (through the outbox): a link still naming a rep who left offers no times.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting import assignment, outbox, schemas, service
from services.prospecting.models import Prospect, Rep
from shared.db import utcnow
from shared.errors import invalid

NOT_NULL = ("name", "email", "territories", "active")
REP_TASKS_MOVE = "rep_tasks"  # outreach's POST /internal/reps/{id}/tasks/reassign
REP_STANDING = "rep_standing"  # deals' POST /internal/reps/{id}/standing
REP_SIGNATURE = "rep_signature"  # outreach's POST /internal/reps/{id}/signature


async def patch_rep(
    session: AsyncSession, rep_id: str, patch: schemas.RepPatch
) -> tuple[Rep, dict[str, str | None], str | None]:
    """The changed rep, the prospects that moved (id -> new rep, None: unassigned) and, on
    deactivation, what became of the open tasks that sit with them (None: not deactivated).
    Deactivating or reactivating tells deals (_tell_standing)."""
    rep = await service.get_rep(session, rep_id)
    given = patch.model_fields_set
    for field in NOT_NULL:
        if field in given and getattr(patch, field) is None:
            raise invalid(field, "must not be null")
    if "manager_id" in given:
        await _check_manager(session, rep, patch.manager_id)
        rep.manager_id = patch.manager_id
    signature = (rep.name, rep.email, rep.phone)
    if patch.name is not None:
        rep.name = patch.name
    if patch.email is not None:
        rep.email = patch.email
    if "phone" in given:
        rep.phone = patch.phone
    if (rep.name, rep.email, rep.phone) != signature:
        _tell_signature(session, rep)
    if given & {"capacity", "territories"}:
        await _change_rules(session, rep.id, patch, given)
    moved: dict[str, str | None] = {}
    tasks: str | None = None
    if patch.active is False and rep.active:
        rep.active = False
        await session.flush()
        moved = await _hand_over(session, rep)
        tasks = await _hand_over_tasks(session, rep)
        _tell_standing(session, rep)
    elif patch.active and not rep.active:
        rep.active = True
        _tell_standing(session, rep)
    await session.flush()
    if given & {"capacity", "territories", "active"}:
        # more room, or another rep in a pool: prospects waiting for one may get one now
        await service.assign_waiting(session)
    return rep, moved, tasks


def _tell_standing(session: AsyncSession, rep: Rep) -> None:
    """Deals hears the rep left (or came back), through the outbox: the booking links of their
    prospects not handed over still name them, and must offer no times while they are away. The
    change's time lets deals keep the newest word when an older one is delivered late."""
    outbox.add(
        session,
        kind=REP_STANDING,
        target="deals",
        path=f"/internal/reps/{rep.id}/standing",
        payload={"active": rep.active, "changed_at": utcnow().isoformat()},
        subject_id=rep.id,
    )


def _tell_signature(session: AsyncSession, rep: Rep) -> None:
    """Outreach hears that the rep's name, email or phone changed, through the outbox: the
    running journeys of their prospects hold the details they were started (or reassigned)
    with, and signed every message with the old ones for as long as they ran. Outreach reads
    the details from here when it is told, so a late or repeated delivery carries the latest."""
    outbox.add(
        session,
        kind=REP_SIGNATURE,
        target="outreach",
        path=f"/internal/reps/{rep.id}/signature",
        payload={},
        subject_id=rep.id,
    )


async def _hand_over_tasks(session: AsyncSession, rep: Rep) -> str:
    """Their open tasks (as the assignee) go to their manager if active; else they stay."""
    manager = await session.get(Rep, rep.manager_id) if rep.manager_id else None
    if manager is None or not manager.active:
        why = "no manager" if manager is None else f"manager {manager.name} is inactive"
        return f"open tasks assigned to {rep.name} stay with them ({why}): reassign them by hand"
    outbox.add(
        session,
        kind=REP_TASKS_MOVE,
        target="outreach",
        path=f"/internal/reps/{rep.id}/tasks/reassign",
        payload={"rep_id": manager.id},
        subject_id=rep.id,
    )
    return f"open tasks assigned to {rep.name} move to their manager {manager.name} ({manager.id})"


async def _check_manager(session: AsyncSession, rep: Rep, manager_id: str | None) -> None:
    if manager_id is None:
        return
    if manager_id == rep.id:
        raise invalid("manager_id", "a rep cannot be their own manager")
    await service.active_manager(session, manager_id)
    seen: set[str] = set()
    current: str | None = manager_id
    while current is not None and current not in seen:
        seen.add(current)
        manager = await session.get(Rep, current)
        if manager is None:
            raise invalid("manager_id", f"no rep {current} to be the manager")
        if manager.manager_id == rep.id:
            raise invalid("manager_id", f"rep {rep.id} manages {current}: that would be a loop")
        current = manager.manager_id


async def _change_rules(
    session: AsyncSession, rep_id: str, patch: schemas.RepPatch, given: set[str]
) -> None:
    rules, _ = await assignment.load_rules(session)
    if "capacity" in given:
        if patch.capacity is None:
            rules.capacity.pop(rep_id, None)
        else:
            rules.capacity[rep_id] = patch.capacity
    if patch.territories is not None:
        wanted = set(patch.territories)
        unknown = sorted(wanted - {t.name for t in rules.territories})
        if unknown:
            raise invalid("territories", f"no territory is named {', '.join(unknown)}")
        for territory in rules.territories:
            works = rep_id in territory.rep_ids
            if territory.name in wanted and not works:
                territory.rep_ids.append(rep_id)
            elif territory.name not in wanted and works:
                if territory.rep_ids == [rep_id]:
                    raise invalid(
                        "territories", f"territory {territory.name} would have no rep left"
                    )
                territory.rep_ids.remove(rep_id)
    await assignment.replace_rules(session, rules)


async def _hand_over(session: AsyncSession, rep: Rep) -> dict[str, str | None]:
    theirs = (
        await session.scalars(
            select(Prospect)
            .where(Prospect.rep_id == rep.id, Prospect.stage.in_(assignment.NEEDS_A_REP))
            .order_by(Prospect.created_at, Prospect.id)
        )
    ).all()
    assigner = await assignment.Assigner.load(session)  # without the deactivated rep
    moved = {p.id: await _to_active_rep(session, assigner, p, rep, running=True) for p in theirs}
    await session.flush()
    return moved


async def come_back(session: AsyncSession, prospect_id: str) -> tuple[Prospect, bool]:
    """The prospect comes back (enrolled again, a follow-up, a late reply, a reopened deal, a
    referral of a known person): one whose rep was deactivated while their journey was over
    (not handed over then) goes to an active rep by the assignment rules now, as on the
    deactivation, so the new run and its deal are not the inactive rep's. Idempotent: an active rep keeps them. True: handed over (the rep moves are
    queued in the outbox)."""
    prospect = await service.get_prospect(session, prospect_id)
    rep = prospect.rep
    if rep is None or rep.active:
        return prospect, False
    assigner = await assignment.Assigner.load(session)
    await _to_active_rep(session, assigner, prospect, rep, running=False)
    await session.flush()
    return await service.get_prospect(session, prospect_id), True


async def _to_active_rep(
    session: AsyncSession,
    assigner: assignment.Assigner,
    prospect: Prospect,
    gone: Rep,
    *,
    running: bool,
) -> str | None:
    """Hand `prospect` of the deactivated `gone` to the rep the rules pick (what they own in
    other services follows, as on a reassignment); None: nobody has room, left unassigned.
    `running`: their journey may be under way (a deactivation's hand-over), so outreach is told
    to hold it. A prospect coming back has no run going yet: told too, the pause would land
    before or after their new run starts, so that run would wait or not by chance."""
    new_rep, how = assigner.assign(prospect.country, seat=assignment.takes_seat(prospect.stage))
    if new_rep is None:
        prospect.rep_id = None
        if running:
            why = f"rep {gone.name} was deactivated and no active rep had room"
            await service.queue_unassigned(session, prospect.id, why)
    else:
        prospect = await service.reassign(session, prospect.id, new_rep.id)
    prospect.assignment_note = f"{how} (rep {gone.name} was deactivated)"
    return new_rep.id if new_rep is not None else None
