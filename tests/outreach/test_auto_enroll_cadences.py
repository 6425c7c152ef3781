"""Which cadences enrol new prospects by themselves: each cadence's current version decides."""

from __future__ import annotations

from services.outreach.cadences.auto_enroll import AutoCadence, auto_cadences
from tests.support.consent import outreach_rig
from tests.support.fixtures import Ground
from tests.support.scenarios import fast_cadence
from tests.support.settings import AUTH


async def test_the_current_version_of_each_cadence_decides_whether_it_auto_enrols(
    ground: Ground,
) -> None:
    async with outreach_rig(ground) as st:

        async def create(body: dict[str, object]) -> str:
            r = await st.api.post("/cadences", json=body, headers=AUTH)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        async def new_version(cadence_id: str, body: dict[str, object]) -> None:
            r = await st.api.put(f"/cadences/{cadence_id}", json=body, headers=AUTH)
            assert r.status_code == 200, r.text
            assert r.json()["version"] == 2

        turned_off = await create(fast_cadence(auto_enroll=True, auto_enroll_min_tier="B"))
        turned_on = await create(fast_cadence())
        kept = await create(fast_cadence(auto_enroll=True, auto_enroll_min_tier="C"))
        strict = await create(fast_cadence(auto_enroll=True, auto_enroll_min_tier="A"))
        await create(fast_cadence())  # never auto-enrols
        await new_version(turned_off, fast_cadence())
        await new_version(turned_on, fast_cadence(auto_enroll=True, auto_enroll_min_tier="B"))

        async with st.sessions() as session:
            found = await auto_cadences(session)
        # strictest tier first; created order among equals
        assert found == [
            AutoCadence(strict, "A"),
            AutoCadence(turned_on, "B"),
            AutoCadence(kept, "C"),
        ]
