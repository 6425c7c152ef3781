"""The stage truth every whole-stack test ends with (tests/support/stage_truth.py) judges the
journey run's own deal: an earlier run's closed deal is history, an earlier deal still open or the
run's deal at another stage is a disagreement. Fed canned answers, as the services give them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.scenarios import Driver, Urls
from tests.support.stage_truth import disagreement

URLS = Urls(*(f"http://{s}.test" for s in ("p", "o", "d", "r", "m", "t")))
PID = "p1"


def stack_answering(journey: dict[str, Any], deals: list[dict[str, Any]]) -> Driver:
    answers = {
        f"{URLS.outreach}/journeys/{PID}": {"status": "running", **journey},
        f"{URLS.prospecting}/prospects/{PID}": {"stage": journey["stage"]},
        f"{URLS.deals}/deals": {"items": deals},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers[str(request.url.copy_with(query=None))])

    driver = Driver(URLS)
    driver.http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return driver


@pytest.mark.parametrize(
    ("journey", "deals", "found"),
    [
        # a later run at contacting, after a run whose deal was lost: they agree
        ({"stage": "contacting", "deal_id": None}, [{"id": "d1", "stage": "lost"}], None),
        # the run's deal, newest first or not, at the run's stage
        (
            {"stage": "presenting", "deal_id": "d2"},
            [{"id": "d1", "stage": "disqualified"}, {"id": "d2", "stage": "presenting"}],
            None,
        ),
        ({"stage": "referrals", "deal_id": "d1"}, [{"id": "d1", "stage": "won"}], None),
        # the run's deal elsewhere
        (
            {"stage": "closing", "deal_id": "d1"},
            [{"id": "d1", "stage": "presenting"}],
            "p1: journey closing, prospect closing, deal presenting",
        ),
        # an earlier deal left open beside the run
        (
            {"stage": "contacting", "deal_id": None},
            [{"id": "d1", "stage": "objections"}],
            "p1: journey contacting, prospect contacting, deal None, another deal open at "
            "['objections']",
        ),
    ],
)
async def test_the_run_s_own_deal_is_judged(
    journey: dict[str, Any], deals: list[dict[str, Any]], found: str | None
) -> None:
    driver = stack_answering(journey, deals)
    try:
        assert await disagreement(driver, {"id": PID}) == found
    finally:
        await driver.close()
