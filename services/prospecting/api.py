"""Prospecting routes: reps, prospects, stage history, the ICP and imports. All need an API key."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting import assignment, erasure, fit, icp, imports, reps, schemas, service
from services.prospecting import timeline as timeline_view
from shared.audit import request_actor
from shared.auth import require_api_key
from shared.contracts.journey import Stage
from shared.db import Session, request_sessions, transaction_conflict
from shared.erasure import forget_cached_key
from shared.idempotency import Idempotent, IdempotentRepeat
from shared.ids import IdFilter

router = APIRouter(dependencies=[Depends(require_api_key)])
# an erasure aborted as a deadlock's victim is run again, up to this many times in all
ERASURE_ATTEMPTS = 3


@router.post("/reps", status_code=201, tags=["reps"], dependencies=[Idempotent])
async def create_rep(body: schemas.RepCreate, session: Session) -> schemas.Rep:
    return schemas.Rep.model_validate(await service.create_rep(session, body))


@router.get("/reps", tags=["reps"])
async def list_reps(session: Session) -> list[schemas.Rep]:
    return [schemas.Rep.model_validate(r) for r in await service.list_reps(session)]


@router.patch("/reps/{rep_id}", tags=["reps"])
async def patch_rep(
    rep_id: str, body: schemas.RepPatch, request: Request, session: Session
) -> schemas.RepChanged:
    """Edit a rep, their capacity and territories; `active: false` hands their prospects (with
    their tasks, deals and referral asks) over to other reps by the assignment rules."""
    rep, moved, tasks = await reps.patch_rep(session, rep_id, body)
    out = schemas.RepChanged.model_validate(rep).model_copy(update={"moved": moved, "tasks": tasks})
    await session.commit()
    request.app.state.outbox.wake()
    return out


@router.get("/reps/{rep_id}", tags=["reps"])
async def get_rep(rep_id: str, session: Session) -> schemas.Rep:
    return schemas.Rep.model_validate(await service.get_rep(session, rep_id))


@router.post("/prospects", status_code=201, tags=["prospects"], dependencies=[Idempotent])
async def create_prospect(
    body: schemas.ProspectCreate, request: Request, session: Session
) -> schemas.Prospect:
    """Create a prospect and assign a rep: the prospect's territory (by country) first, then
    round robin among the reps below capacity (none: unassigned, `assignment_note` says why).
    A person who asked to be erased is refused (409 erased_person)."""
    settings = request.app.state.settings
    pepper = settings.erasure_pepper.get_secret_value()
    created = await service.create_prospect(session, body, pepper, settings.master_keys)
    return schemas.Prospect.model_validate(created)


@router.get("/prospects", tags=["prospects"])
async def list_prospects(
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=500, description="next_cursor of the previous page")
    ] = None,
    stage: Stage | None = None,
    tier: fit.Tier | None = None,
    rep_id: IdFilter = None,
    source: schemas.Source | None = None,
    q: Annotated[
        str | None, Query(max_length=200, description="in name, email or company (any case)")
    ] = None,
    sort: Literal["created_at", "-created_at", "fit_score", "-fit_score"] = "created_at",
) -> schemas.ProspectPage:
    """Filtered, sorted, keyset-paginated: pass next_cursor back with the same filters and sort."""
    items, next_cursor = await service.list_prospects(
        session,
        limit=limit,
        cursor=cursor,
        stage=stage,
        tier=tier,
        rep_id=rep_id,
        source=source,
        q=q,
        sort=sort,
    )
    return schemas.ProspectPage(
        items=[schemas.Prospect.model_validate(p) for p in items], next_cursor=next_cursor
    )


@router.get("/prospects/{prospect_id}", tags=["prospects"])
async def get_prospect(prospect_id: str, session: Session) -> schemas.Prospect:
    """The prospect with their rep: everything a journey's Contact is built from."""
    return schemas.Prospect.model_validate(await service.get_prospect(session, prospect_id))


@router.post("/internal/prospects/{prospect_id}/comeback", tags=["prospects"])
async def come_back(prospect_id: str, request: Request, session: Session) -> schemas.Prospect:
    """The prospect comes back to outreach (enrolled again, a follow-up, a late reply, a reopened
    deal): the prospect as a run's Contact is built from, with an active rep (a deactivated
    one's goes to another by the assignment rules, what they own elsewhere following through
    the outbox)."""
    prospect, handed_over = await reps.come_back(session, prospect_id)
    out = schemas.Prospect.model_validate(prospect)
    if handed_over:  # every enrolment asks: the usual answer writes and wakes nothing
        await session.commit()
        request.app.state.outbox.wake()
    return out


@router.get("/prospects/{prospect_id}/stages", tags=["prospects"])
async def stage_history(prospect_id: str, session: Session) -> list[schemas.StageEntry]:
    rows = await service.stage_history(session, prospect_id)
    return [schemas.StageEntry.model_validate(r) for r in rows]


@router.get("/icp", tags=["icp"])
async def get_icp(session: Session) -> schemas.Icp:
    rules, row = await icp.load(session)
    return schemas.Icp(
        rules=rules, version=row.version if row else 0, updated_at=row.updated_at if row else None
    )


@router.put("/icp", tags=["icp"])
async def put_icp(body: fit.IcpRules, session: Session) -> schemas.Icp:
    """Replace the ICP and rescore every prospect with it (in batches)."""
    row, rescored = await icp.replace(session, body)
    return schemas.Icp(
        rules=body, version=row.version, updated_at=row.updated_at, rescored=rescored
    )


# re-running a file is safe (rows are matched to the prospects they made): the retry of a failed one
IMPORT_BODY = {
    "required": True,
    "content": {
        "text/csv": {
            "schema": {"type": "string", "description": "a header row, then one prospect a row"},
            "example": "first_name,last_name,email,company\nAda,Lovelace,ada@example.com,Engines\n",
        },
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "one JSON object a line"},
            "example": '{"first_name": "Ada", "email": "ada@example.com"}\n',
        },
    },
}


@router.post(
    "/imports",
    status_code=201,
    tags=["imports"],
    dependencies=[IdempotentRepeat],
    # the body is read as a stream, so FastAPI cannot tell the OpenAPI what it is
    openapi_extra={"requestBody": IMPORT_BODY},
)
async def create_import(
    request: Request,
    session: Session,
    format: Annotated[
        Literal["csv", "ndjson"] | None,
        Query(description="overrides the Content-Type (text/csv or application/x-ndjson)"),
    ] = None,
) -> schemas.ImportReport:
    """Import the request body, streamed: a CSV with a header row, or one JSON object a line.

    Columns other than the prospect's fields go into `custom`. Each batch of rows commits on its
    own; the report lists every refused row with its line number and the reason.
    """
    fmt = imports.format_of(request.headers.get("content-type", ""), format)
    settings = request.app.state.settings
    secrets = imports.ImportSecrets(
        settings.erasure_pepper.get_secret_value(), settings.master_keys
    )
    # the batches' sessions act for the request: what they change is in the audit log
    import_id = await imports.run_import(
        request_sessions(request), request.stream(), fmt, secrets, request_actor(request)
    )
    return await imports.get_report(session, import_id)


@router.get("/imports/{import_id}", tags=["imports"])
async def get_import(import_id: str, session: Session) -> schemas.ImportReport:
    return await imports.get_report(session, import_id)


# --- assignment, erasure, timeline (ops) --------------------------------------------------------


async def _assignment_rules(session: AsyncSession) -> schemas.AssignmentRulesOut:
    rules, row = await assignment.load_rules(session)
    return schemas.AssignmentRulesOut(
        rules=rules,
        version=row.version if row else 0,
        updated_at=row.updated_at if row else None,
        load=[schemas.RepLoad(**r) for r in await assignment.load_report(session)],
    )


@router.get("/assignment-rules", tags=["assignment"])
async def get_assignment_rules(session: Session) -> schemas.AssignmentRulesOut:
    """Territories, capacities, and each rep's open prospects against their capacity."""
    return await _assignment_rules(session)


@router.put("/assignment-rules", tags=["assignment"])
async def put_assignment_rules(
    body: assignment.Rules, session: Session
) -> schemas.AssignmentRulesOut:
    """Replace the rules; they apply to prospects created from now on, and to those left
    unassigned for want of capacity (they get a rep now if the new rules make room)."""
    await assignment.replace_rules(session, body)
    await service.assign_waiting(session)
    return await _assignment_rules(session)


@router.patch("/prospects/{prospect_id}", tags=["prospects"])
async def update_prospect(
    prospect_id: str, body: schemas.ProspectUpdate, request: Request, session: Session
) -> schemas.Prospect:
    """Reassign the prospect; their open tasks in outreach follow (retried until outreach
    has them, so an outreach outage delays the move but never loses it)."""
    prospect = await service.reassign(session, prospect_id, body.rep_id)
    out = schemas.Prospect.model_validate(prospect)
    await session.commit()
    request.app.state.outbox.wake()
    return out


@router.post("/prospects/{prospect_id}/erasure", status_code=202, tags=["erasure"])
async def request_erasure(
    prospect_id: str, request: Request, response: Response, session: Session
) -> schemas.ErasureStatus:
    """Right to erasure: the person's data goes from every service, their journey stops, and
    only keyed digests of their email and phone stay so they are never contacted again.
    202 while services are still confirming (see GET); repeating the request is harmless."""
    pepper = request.app.state.settings.erasure_pepper.get_secret_value()
    for attempt in range(ERASURE_ATTEMPTS):
        try:
            _, created = await service.request_erasure(session, prospect_id, pepper)
            await session.commit()
            break
        except DBAPIError as err:
            # it rewrites the outbox rows naming the person while the relay records a batch
            # that holds some of them: PostgreSQL may abort it as a deadlock's victim (seen
            # in CI): run it again rather than answer 500
            await session.rollback()
            if not transaction_conflict(err) or attempt == ERASURE_ATTEMPTS - 1:
                raise
    forget_cached_key(request.app.state.temporal, prospect_id)
    if created:
        request.app.state.outbox.wake()
    status = schemas.ErasureStatus.model_validate(await erasure.status_of(session, prospect_id))
    response.status_code = 202 if status.status != "done" else 200
    return status


@router.get("/prospects/{prospect_id}/erasure", tags=["erasure"])
async def erasure_status(prospect_id: str, session: Session) -> schemas.ErasureStatus:
    """Where the erasure is: each service's confirmation, attempts and last error."""
    return schemas.ErasureStatus.model_validate(await erasure.status_of(session, prospect_id))


@router.get("/prospects/{prospect_id}/timeline", tags=["prospects"])
async def prospect_timeline(
    prospect_id: str, request: Request, session: Session
) -> schemas.Timeline:
    """Everything that happened to the prospect, across services, oldest first; a service
    that did not answer is named in `sources` (and `complete` is false)."""
    return await timeline_view.timeline(
        session, request.app.state.peer_http, request.app.state.settings, prospect_id
    )
