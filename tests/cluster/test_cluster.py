"""`make test-cluster`: closeflow on a real Temporal cluster, with workers killed and history restarted.

The cluster is Temporal's own server, built from its Go module at the pinned release
(devstack/cluster.py): frontend, history, matching and the internal worker as four processes on
PostgreSQL, like every service database here. Two worker processes serve each task queue, and
two replicas of each API serve behind nginx, which the journeys are driven through. While the
journeys wait on their prospects (no activity running, so no activity timeout to sit out), one
worker of each queue and one replica of each API are killed with SIGKILL and the history service
is restarted; the supervisor starts them again, as an orchestrator would. Then: every journey reached its stage,
every message went out exactly once (the SMTP and Twilio sandboxes against the send ledger),
and every task queue has both live worker processes polling it.

Not collected by `make test` (pyproject's --ignore): building the server takes minutes on first
use. When the module proxy cannot provide the server, the test says so with the exact error and
runs the same journeys and kills on the dev server.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.client import Client

from devstack.cluster_stack import WORKER_QUEUES, ClusterStack
from shared.capabilities import STORED_STEPS, capabilities, poller_identities
from shared.settings import SERVICES
from tests.support.cluster import Sent, all_up_again, kill, outbound, tended
from tests.support.cluster import cluster_stack as support_cluster_stack
from tests.support.databases import POSTGRES_URL
from tests.support.dev_stack import ARTIFACTS, urls_of
from tests.support.eventually import eventually
from tests.support.scenarios import (
    Driver,
    Urls,
    contacting_to_referral,
    drive_to_qualification_timeout,
    reach_contacting,
)
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
PROSPECTS = 2  # won journeys driven side by side (each with the referral it brings)


@pytest.fixture(scope="module")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    if not POSTGRES_URL:
        pytest.fail("make test-cluster needs CLOSEFLOW_TEST_POSTGRES_URL (.ci/run sets it)")
    ARTIFACTS.mkdir(exist_ok=True)
    prefix = f"{make_url(POSTGRES_URL).database}_cluster"
    with (
        open(ARTIFACTS / "cluster-stack.log", "w") as log,
        support_cluster_stack(
            POSTGRES_URL, prefix, tmp_path_factory.mktemp("cluster"), log
        ) as stack,
    ):
        yield stack


async def disrupt(stack: ClusterStack) -> dict[str, int]:
    """kill -9 the first worker of every queue and the first replica of every API, and restart
    the history service."""
    first = [stack.workers(q)[0].name for q in WORKER_QUEUES]
    first += [stack.api_replicas(s)[0].name for s in SERVICES]
    old = {name: kill(stack, name, signal.SIGKILL) for name in first}
    # meanwhile every API still answers through nginx, its other replica taking the requests
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, headers=AUTH) as http:
        for service in SERVICES:
            for _ in range(2 * len(stack.api_replicas(service))):
                response = await http.get(f"{stack.base_url(service)}/healthz")
                assert response.status_code == 200, (service, response.text)
    if stack.on_cluster:
        # a rolling restart's stop: history hands its shards back and the new process takes them
        old["temporal-history"] = kill(stack, "temporal-history", signal.SIGTERM)
    await all_up_again(stack, old)
    return old


async def check_sent_once(urls: Urls, prospect: dict[str, Any]) -> int:
    """Every ledger send reached its sandbox exactly once, and nothing else did. A send the
    sandbox has already accepted may not be recorded yet (the referred prospect's introduction,
    made just before): it is waited for; one left `sending` for good fails."""
    d = Driver(urls)
    try:

        async def settled() -> list[dict[str, Any]] | None:
            ledger = await d.ok("GET", f"{urls.outreach}/prospects/{prospect['id']}/messages")
            return ledger if all(m["status"] != "sending" for m in ledger) else None

        ledger = await eventually(settled, f"{prospect['first_name']}'s sends recorded", 60)
        sent = Sent(
            ledger,
            await d.mails_to(prospect["email"]),
            outbound(await d.sms_to(prospect["phone"])),
        )
        assert sent.email_ids() == sent.ledger_ids("email"), (sent.emails, ledger)
        assert sent.text_ids() == sent.ledger_ids("sms"), (sent.texts, ledger)
        return len(sent.sent)
    finally:
        await d.close()


async def pollers(client: Client, task_queue: str, kind: TaskQueueType.ValueType) -> set[str]:
    """The pollers Temporal lists on every partition of `task_queue` (the APIs' own question,
    shared.capabilities, asked of the real server), each as `<pid>@<host>`; every one says it
    knows stored steps (this release's workers), or the APIs' `auto` would carry templates."""
    identities = await poller_identities(client, task_queue, kind)
    assert all(STORED_STEPS in capabilities(i) for i in identities), identities
    return {identity.split()[0] for identity in identities}


async def test_journeys_on_the_cluster_survive_killed_workers_and_a_history_restart(
    cluster_stack: ClusterStack,
) -> None:
    stack = cluster_stack
    urls = urls_of(stack)
    async with tended(stack):
        drivers = [Driver(urls) for _ in range(PROSPECTS)]
        try:
            # the journeys start and make their first touches, then wait on their prospects
            started = await asyncio.gather(*(reach_contacting(d) for d in drivers))
            killed = await disrupt(stack)
            done = await asyncio.gather(
                *(
                    contacting_to_referral(d, a, f)
                    for d, (a, f) in zip(drivers, started, strict=True)
                ),
                drive_to_qualification_timeout(urls),
            )
        finally:
            for d in drivers:
                await d.close()

        # each killed or stopped process was started again once, and nothing else died
        for name in killed:
            assert stack.child(name).restarts == 1, name
        assert stack.dead() == []

        prospects = [p for journey in done for p in journey.values()]
        counts = [await check_sent_once(urls, p) for p in prospects]
        assert all(counts), counts  # every prospect got something: the check is not vacuous

        client = await Client.connect(
            stack.settings.temporal_address, namespace=stack.settings.temporal_namespace
        )
        host = socket.gethostname()
        for queue in WORKER_QUEUES:
            live = {f"{c.process.pid}@{host}" for c in stack.workers(queue) if c.process}
            assert len(live) == 2
            polling = functools.partial(both_polling, client, stack, queue, live)
            await eventually(polling, f"both workers of {queue} polling", timeout=60)


async def both_polling(client: Client, stack: ClusterStack, queue: str, live: set[str]) -> bool:
    kind = (
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        if queue == "journeys"
        else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    )
    return live <= await pollers(client, stack.settings.task_queue(queue), kind)
