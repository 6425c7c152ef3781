"""Journeys for the funnel tests, recorded through the real write path, and a brute-force funnel
computed from the raw changes (no aggregate tables, no code of services/prospecting/funnel.py
but its bucketing and stage order, which the API states as its definitions)."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from services.prospecting.activities import ProspectingActivities
from shared.contracts.journey import StageChange

STAGES = (
    "prospecting",
    "contacting",
    "qualifying",
    "presenting",
    "objections",
    "closing",
    "referrals",
)
ORDER = {s: i for i, s in enumerate(STAGES[:6])} | {"won": 6, "referrals": 7}
DROP = {"lost", "disqualified", "nurture"}


@dataclass
class Change:
    prospect_id: str
    from_stage: str | None
    to_stage: str
    cause: str
    at: datetime
    cadence_id: str
    rep_id: str
    source: str
    seconds: float | None = None


@dataclass
class Truth:
    changes: list[Change] = field(default_factory=list)


def _path(rng: random.Random) -> list[tuple[str, str]]:
    """(to_stage, cause) of one journey after enrollment, like ProspectJourney makes them."""
    steps = [("contacting", "enrolled in cadence C v1")]
    if rng.random() < 0.35:
        return [*steps, ("nurture", "no response after the last cadence step")]
    steps.append(("qualifying", rng.choice(["replied by email", "replied by sms"])))
    if rng.random() < 0.3:
        reason = rng.choice(["budget", "no authority"])
        return [*steps, ("disqualified", f"not qualified: {reason}")]
    steps.append(("presenting", "qualified"))
    if rng.random() < 0.5:
        steps.append(("objections", "objection: price"))
    if rng.random() < 0.4:
        return [*steps, ("lost", f"closed lost: {rng.choice(['price', 'timing'])}")]
    steps.append(("won", "closed won: signed"))
    if rng.random() < 0.7:
        steps.append(("referrals", "referral request sent"))
    return steps


async def record_journeys(
    http: httpx.AsyncClient,
    acts: ProspectingActivities,
    *,
    prospects: int,
    start: datetime,
    days: int,
    cadences: list[str],
    seed: int = 7,
    truth: Truth | None = None,
) -> Truth:
    """Create prospects through the API and record their journeys' changes with the activity.

    Only the first journey change names the cadence; the later ones rely on prospecting passing
    it on (like the journeys recorded before the field existed)."""
    rng = random.Random(seed)
    truth = truth or Truth()
    for i in range(prospects):
        source = "referral" if rng.random() < 0.3 else "cold"
        resp = await http.post(
            "/prospects",
            json={"first_name": f"P{i}", "email": f"p{i}-{seed}@example.com", "source": source},
        )
        assert resp.status_code == 201, resp.text
        p = resp.json()
        rep_id = p["rep_id"] or ""
        created = datetime.fromisoformat(p["created_at"])
        truth.changes.append(
            Change(p["id"], None, "prospecting", "created", created, "", rep_id, source)
        )
        cadence = rng.choice(cadences)
        at = start + timedelta(seconds=rng.uniform(0, days * 86400))
        previous = "prospecting"
        for n, (to_stage, cause) in enumerate(_path(rng), start=1):
            at += timedelta(seconds=rng.uniform(30, 12 * 86400))
            await acts.record_stage(
                StageChange(
                    key=f"journey-{p['id']}:{n}",
                    prospect_id=p["id"],
                    from_stage=previous,
                    to_stage=to_stage,
                    cause=cause,
                    at=at.isoformat(),
                    cadence_id=cadence if n == 1 else "",
                )
            )
            truth.changes.append(
                Change(p["id"], previous, to_stage, cause, at, cadence, rep_id, source)
            )
            previous = to_stage
    _durations(truth)
    return truth


def _durations(truth: Truth) -> None:
    """Time in the stage left = this change's time - the latest earlier-recorded change of the
    same prospect at or before it (the creation row is recorded first but dated now)."""
    seen: dict[str, list[datetime]] = defaultdict(list)
    for change in truth.changes:
        earlier = [t for t in seen[change.prospect_id] if t <= change.at]
        change.seconds = (change.at - max(earlier)).total_seconds() if earlier else None
        seen[change.prospect_id].append(change.at)


def bucket(seconds: float) -> int:
    return 0 if seconds < 1 else 1 + math.floor(math.log2(seconds) * 8)


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


def brute_force(
    truth: Truth,
    start: date,
    end: date,
    *,
    group_by: str | None = None,
    **filters: str,
) -> dict[str | None, dict[str, Any]]:
    """{group key: {"stages": {stage: numbers}, "outcomes": {...}}} from the raw changes."""
    out: dict[str | None, dict[str, Any]] = {}
    for c in truth.changes:
        if not start <= c.at.astimezone(UTC).date() < end:
            continue
        if any(getattr(c, k) != v for k, v in filters.items()):
            continue
        key: str | None
        if group_by == "month":
            key = c.at.astimezone(UTC).strftime("%Y-%m")
        elif group_by is not None:
            key = getattr(c, {"cadence": "cadence_id", "rep": "rep_id"}.get(group_by, group_by))
        else:
            key = None
        g = out.setdefault(
            key,
            {
                "stages": {
                    s: {
                        "entered": 0,
                        "left": 0,
                        "advanced": 0,
                        "dropped": 0,
                        "causes": Counter(),
                        "stays": [],
                    }
                    for s in STAGES
                },
                "outcomes": Counter(),
            },
        )
        if c.to_stage in g["stages"]:
            g["stages"][c.to_stage]["entered"] += 1
        if c.to_stage in ("won", "lost", "disqualified", "nurture"):
            g["outcomes"][c.to_stage] += 1
        if c.from_stage in g["stages"]:  # won -> referrals leaves no funnel stage
            s = g["stages"][c.from_stage]
            s["left"] += 1
            if c.to_stage in DROP:
                s["dropped"] += 1
                # counted by the cause's kind only: the text after it can name the person
                s["causes"][c.cause.split(":", 1)[0]] += 1
            elif ORDER.get(c.to_stage, -1) > ORDER[c.from_stage]:
                s["advanced"] += 1
            if c.seconds is not None:
                s["stays"].append(c.seconds)
    return out


def assert_matches(api_group: dict[str, Any], expected: dict[str, Any]) -> None:
    """The API's numbers for one group equal the brute force's (percentiles: same bucket)."""
    assert api_group["outcomes"] == {
        o: expected["outcomes"][o] for o in ("won", "lost", "disqualified", "nurture")
    }
    for row in api_group["stages"]:
        want = expected["stages"][row["stage"]]
        got = {k: row[k] for k in ("entered", "left", "advanced", "dropped")}
        assert got == {k: want[k] for k in got}, row["stage"]
        conversion = want["advanced"] / want["left"] if want["left"] else None
        assert row["conversion"] == (None if conversion is None else round(conversion, 4))
        assert {d["cause"]: d["count"] for d in row["drop_off"]} == dict(want["causes"])
        assert row["stays_measured"] == len(want["stays"])
        for field_name, p in (("median_seconds", 0.5), ("p90_seconds", 0.9)):
            exact = nearest_rank(want["stays"], p)
            if exact is None:
                assert row[field_name] is None
                continue
            assert bucket(row[field_name]) == bucket(exact), (row["stage"], field_name)
            assert abs(row[field_name] / exact - 1) < 0.045, (row[field_name], exact)
