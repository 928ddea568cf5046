"""The per-role RabbitMQ users of the Compose stack (docker/rabbitmq/setup_users.py), for real.

The permission set is applied with rabbitmqctl to users made for this test alone, on a group of
its own; then each user does its job through the real broker code, and the worker user is shown
the gateway's doors closed: no deleting its queues, no reading saved sessions, no identify lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from stack_kit import RABBITMQCTL

from spectacles.broker.admin import AccessRefused, BrokerAdmin
from spectacles.broker.delayed import delay_queue_arguments, delay_queue_name
from spectacles.broker.settings import BrokerSettings
from spectacles.broker.topology import (
    OVERSIZE_QUEUE_ARGUMENTS,
    UNROUTED_QUEUE_ARGUMENTS,
    QueueSpec,
    Topology,
)

pytestmark = pytest.mark.rmq4  # also run against RabbitMQ 4 (make test-rmq4)

SETUP = Path(__file__).parents[1] / "docker" / "rabbitmq" / "setup_users.py"


def load_setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rabbit_setup_users", SETUP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def rabbitmqctl(*args: str) -> None:
    result = subprocess.run([*RABBITMQCTL, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"rabbitmqctl {args[0]}: {result.stderr}"


@pytest.fixture
async def role_urls(amqp_url: str, group: str) -> AsyncIterator[dict[str, str]]:
    """An AMQP URL per role, for users with the stack's permissions on ``group``."""
    setup = load_setup()
    parts = urlsplit(amqp_url)
    vhost = parts.path.lstrip("/") or "/"
    urls: dict[str, str] = {}
    made: list[str] = []
    try:
        for role, permission in setup.permissions(group).items():
            name = f"{group}-{role}"
            password = secrets.token_hex(16)  # never starts with "-" (an option to rabbitmqctl)
            await asyncio.to_thread(rabbitmqctl, "add_user", name, password)
            made.append(name)
            await asyncio.to_thread(
                rabbitmqctl,
                "set_permissions",
                "-p",
                vhost,
                name,
                permission.configure,
                permission.write,
                permission.read,
            )
            host = f"{parts.hostname}:{parts.port or 5672}"
            urls[role] = f"amqp://{quote(name, safe='')}:{password}@{host}/{quote(vhost, safe='')}"
        yield urls
    finally:
        for name in made:
            await asyncio.to_thread(rabbitmqctl, "delete_user", name)


@pytest.fixture
async def connect(group: str) -> AsyncIterator[Callable[[str], Awaitable[BrokerAdmin]]]:
    """Connect as a role's user (its URL), on the test's group."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_(url: str) -> BrokerAdmin:
            admin = await BrokerAdmin.connect(BrokerSettings(amqp_url=url, group=group))
            return await stack.enter_async_context(admin)

        yield open_


async def refused(action: Awaitable[Any]) -> bool:
    """Whether RabbitMQ refuses ``action`` with ACCESS_REFUSED (each admin call has its channel)."""
    try:
        await action
    except AccessRefused:
        return True
    return False


async def gateway_does_its_job(gateway: BrokerAdmin, group: str) -> None:
    """What the gateway declares, publishes and reads (see docs/wire-format.md)."""
    t = Topology(group)
    await gateway.declare_exchange(t.events_exchange, "direct")
    # where unroutable returns and records of oversize events go (publisher.declare_queue)
    for name, arguments in (
        (t.unrouted_queue, UNROUTED_QUEUE_ARGUMENTS),
        (t.oversize_queue, OVERSIZE_QUEUE_ARGUMENTS),
    ):
        await gateway.declare_queue(name, arguments=arguments)
        await gateway.publish("", name, b"{}")
    await gateway.publish(t.events_exchange, "MESSAGE_CREATE", b"{}")
    # the commands of shard 0: a queue with its dead-letter queue, bound to their exchanges
    await gateway.declare_exchange(t.commands_exchange, "direct")
    spec = QueueSpec(
        t.commands_queue(0), t.commands_exchange, (t.commands_routing_key(0),), "classic"
    )
    await gateway.declare_spec(spec)
    # a saved session, published through the default exchange and peeked at (left in place)
    sessions = f"{group}.sessions.0"
    await gateway.declare_queue(
        sessions,
        arguments={"x-queue-type": "classic", "x-max-length": 1, "x-overflow": "drop-head"},
    )
    await gateway.publish("", sessions, b"session")  # confirmed: it is in the queue
    message = await gateway.get(sessions, ack=False)
    assert message is not None and message.body == b"session"
    # an identify lock, and the fatal-block record
    lock = {"durable": False, "exclusive": True, "auto_delete": True}
    await gateway.declare_queue(f"{group}.identify.1.0", **lock)
    await gateway.declare_queue(f"{group}.fatal")
    # the shared identify quota and the exclusive lock around changing it
    await gateway.declare_queue(f"{group}.quota.abc123")
    await gateway.declare_queue(f"{group}.quota.abc123.lock", **lock)
    # auto mode: the cluster's roster (fanout exchange, one queue per member) and shard leases
    roster = f"{group}.gateway.cluster.12"
    await gateway.declare_exchange(roster, "fanout")
    await gateway.declare_queue(f"{roster}.host:1.0", **lock)
    await gateway.bind(f"{roster}.host:1.0", roster, "")
    await gateway.publish(roster, "", b"{}")
    await gateway.declare_queue(f"{group}.gateway.shard.12.0", **lock)


async def test_each_role_can_do_its_job_and_a_worker_nothing_more(
    role_urls: dict[str, str],
    group: str,
    connect: Callable[[str], Awaitable[BrokerAdmin]],
) -> None:
    gateway = await connect(role_urls["gateway"])
    await gateway_does_its_job(gateway, group)

    worker = await connect(role_urls["worker"])
    t = Topology(group)
    # its own queue (declaring the events exchange and DLX too), a helper queue that
    # dead-letters into the events exchange (raid-guard's delay queue), its dead letters
    declared = await worker.declare_spec(QueueSpec(t.worker_queue("ping"), group, ("A",)))
    await worker.declare_queue(
        delay_queue_name(group, "raid-guard.restore", 150),
        arguments=delay_queue_arguments(group, "raid-guard.restore", 150),
    )
    await worker.publish("", declared.name, b"retry")
    await worker.publish(t.dlx, declared.name, b"dead")
    await worker.publish(t.commands_exchange, t.commands_routing_key(0), b"{}")
    (own,) = await worker.take(declared.name)  # it reads its own queue
    assert own.body == b"retry"

    # ...and not the gateway's resources.
    assert await refused(worker.delete_queue(f"{group}.sessions.0"))
    assert await refused(worker.delete_queue(t.commands_queue(0)))
    assert await refused(worker.delete_queue(t.unrouted_queue))
    assert await refused(worker.delete_queue(t.oversize_queue))
    assert await refused(worker.get(f"{group}.sessions.0"))

    async def consume_commands() -> None:
        async with worker.consume(t.commands_queue(0)):
            pass

    assert await refused(consume_commands())
    lock = {"durable": False, "exclusive": True, "auto_delete": True}
    assert await refused(worker.declare_queue(f"{group}.identify.1.0-other", **lock))
    assert await refused(worker.declare_queue(f"{group}.quota.abc123.lock", **lock))
    assert await refused(worker.declare_queue(f"{group}.sessions"))  # named like the gateway's
    assert await refused(worker.declare_queue(f"{group}.gateway.shard.12.0"))  # a shard lease
    assert await refused(worker.declare_exchange(t.commands_exchange, "direct"))
    assert await refused(worker.declare_queue(f"x{group}.ping"))  # outside the group
    # The gateway's resources are all still there.
    for name in (f"{group}.sessions.0", t.commands_queue(0), t.unrouted_queue):
        assert await gateway.exists(name), name


def test_the_setup_refuses_a_service_user_that_is_the_administrator() -> None:
    setup = load_setup()
    env = {
        "RABBITMQ_USER": "spectacles",
        "RABBITMQ_GATEWAY_USER": "spectacles",
        "RABBITMQ_GATEWAY_PASSWORD": "a",
        "RABBITMQ_WORKER_PASSWORD": "b",
        "RABBITMQ_INTERACTIONS_PASSWORD": "c",
    }
    with pytest.raises(setup.SetupError, match="must all differ"):
        setup.role_users(env)
    with pytest.raises(setup.SetupError, match="RABBITMQ_WORKER_PASSWORD"):
        setup.role_users({"RABBITMQ_USER": "admin", "RABBITMQ_GATEWAY_PASSWORD": "a"})


async def test_the_interactions_user_carries_an_answer_from_proxy_to_ingress(
    role_urls: dict[str, str], group: str
) -> None:
    """The REST proxy's offer reaches the ingress and its reply comes back, as that user alone."""
    from spectacles.broker.broker import Broker
    from spectacles.broker.settings import BrokerSettings
    from spectacles.interactions._pending import PendingAnswers
    from spectacles.rest.proxy import IngressOffer

    url = role_urls["interactions"]
    broker = await Broker.connect(BrokerSettings(amqp_url=url, group=group))
    pending = PendingAnswers(broker)
    offer = IngressOffer(url, group, timeout=5.0)
    try:
        await pending.start()
        await offer.start()
        for _ in range(200):
            if offer.ready:
                break
            await asyncio.sleep(0.05)
        assert offer.ready, "the proxy's offer channel never came up"
        answer = await pending.expect("123", "tok")
        body = b'{"type": 4, "data": {"content": "Pong!"}}'
        taken = await offer.offer(
            "POST",
            "/interactions/123/tok/callback",
            {"Content-Type": "application/json"},
            body,
        )
        assert taken is not None and taken.status == 204
        assert await asyncio.wait_for(answer, 5) == body
        await pending.forget("123")
    finally:
        await offer.stop()
        await pending.stop()
        await broker.close()


async def test_the_interactions_user_cannot_read_events_or_sessions(
    role_urls: dict[str, str],
    group: str,
    connect: Callable[[str], Awaitable[BrokerAdmin]],
) -> None:
    gateway = await connect(role_urls["gateway"])
    await gateway_does_its_job(gateway, group)
    interactions = await connect(role_urls["interactions"])
    spy = f"{group}.interactions.ingress.spy"
    lock = {"durable": False, "exclusive": True, "auto_delete": True}

    assert await refused(interactions.get(f"{group}.sessions.0"))
    assert await refused(interactions.declare_queue(spy, bind=(group, "MESSAGE_CREATE"), **lock))
    assert await refused(interactions.declare_queue(f"{group}.ping"))
