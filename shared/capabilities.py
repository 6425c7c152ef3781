"""What a closeflow worker can do, and whether every worker polling a task queue can (issue 13).

A worker says it in its Temporal identity ("<pid>@<host> closeflow:stored-steps"), and Temporal
lists the pollers it saw on a task queue in the last five minutes with their identities
(DescribeTaskQueue, every partition of it). So an API learns from Temporal itself whether a worker of an earlier release
(the SDK's default identity, "<pid>@<host>", or one without the capability) may still take a
task, as happens during a rolling upgrade, without a registry of its own to keep right.

A capability once added stays in every later release's list: a later worker still knows it.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.enums.v1 import DescribeTaskQueueMode, TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue, TaskQueueVersionSelection
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

# renders a journey step that names where its templates are (StoredStep), and a journeys worker
# keeps that name in the steps it hands on
STORED_STEPS = "stored-steps"
CAPABILITIES = (STORED_STEPS,)
_MARK = "closeflow:"

WORKFLOWS = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
ACTIVITIES = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY


def worker_identity(client: Client) -> str:
    """The identity a worker of this release polls with: the client's, and what it can do."""
    return f"{client.identity} {_MARK}{','.join(CAPABILITIES)}"


def capabilities(identity: str) -> frozenset[str]:
    """What a poller's identity says it can do (nothing: a worker of an earlier release)."""
    for word in identity.split():
        if word.startswith(_MARK):
            return frozenset(word.removeprefix(_MARK).split(","))
    return frozenset()


async def poller_identities(client: Client, queue: str, kind: TaskQueueType.ValueType) -> list[str]:
    """The identities of the workers Temporal saw polling `queue` for `kind` tasks recently.

    The enhanced mode: it gathers the pollers of every partition of the queue (the server splits
    a queue in 4 by default, and a worker's polls may reach only some), where the legacy mode
    lists the first partition's alone and missed a worker polling another."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            api_mode=DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
            versions=TaskQueueVersionSelection(unversioned=True, all_active=True),
            task_queue_types=[kind],
            report_pollers=True,
        )
    )
    return [
        poller.identity
        for version in described.versions_info.values()
        for of_kind in version.types_info.values()
        for poller in of_kind.pollers
    ]


async def every_poller_can(
    client: Client, capability: str, queues: Sequence[tuple[str, TaskQueueType.ValueType]]
) -> bool:
    """Every queue has pollers, and every one of them says it can. A queue nobody polls says
    nothing of the worker that will come (it may be of an earlier release): no."""
    for queue, kind in queues:
        identities = await poller_identities(client, queue, kind)
        if not identities or any(capability not in capabilities(i) for i in identities):
            return False
    return True
