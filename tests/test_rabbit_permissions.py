"""The per-role RabbitMQ users of the Compose stack (docker/rabbitmq/setup_users.py), for real.

The permission set is applied with rabbitmqctl to users made for this test alone, on a group of
its own; then each user does its job through the real broker code, and the worker user is shown
the gateway's doors closed: no deleting its queues, no reading saved sessions, no identify lock.
"""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import aiormq
import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from stack_kit import RABBITMQCTL

from spectacles.broker.delayed import delay_queue_arguments, delay_queue_name
from spectacles.broker.topology import (
    OVERSIZE_QUEUE_ARGUMENTS,
    UNROUTED_QUEUE_ARGUMENTS,
    QueueSpec,
    Topology,
    declare_queue,
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
            password = secrets.token_urlsafe(16)
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
async def connect() -> AsyncIterator[Callable[[str], Awaitable[AbstractRobustConnection]]]:
    connections: list[AbstractRobustConnection] = []

    async def open_(url: str) -> AbstractRobustConnection:
        connection = await aio_pika.connect_robust(url, timeout=10)
        connections.append(connection)
        return connection

    yield open_
    for connection in connections:
        await connection.close()


async def refused(
    connection: AbstractRobustConnection, action: Callable[[AbstractChannel], Awaitable[Any]]
) -> bool:
    """Whether RabbitMQ refuses ``action`` with ACCESS_REFUSED (on a channel of its own)."""
    channel = await connection.channel()
    try:
        await action(channel)
    except aiormq.exceptions.ChannelAccessRefused:
        return True
    finally:
        if not channel.is_closed:
            await channel.close()
    return False


async def get_eventually(queue: AbstractQueue) -> AbstractIncomingMessage:
    """The queue's next message; a confirm-less publish may take a moment to land."""
    for _ in range(100):
        message = await queue.get(timeout=5, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    pytest.fail(f"nothing arrived in {queue.name}")


async def gateway_does_its_job(connection: AbstractRobustConnection, group: str) -> None:
    """What the gateway declares, publishes and reads (see docs/wire-format.md)."""
    t = Topology(group)
    channel = await connection.channel()
    events = await channel.declare_exchange(
        t.events_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    # where unroutable returns and records of oversize events go (publisher.declare_queue)
    for name, arguments in (
        (t.unrouted_queue, UNROUTED_QUEUE_ARGUMENTS),
        (t.oversize_queue, OVERSIZE_QUEUE_ARGUMENTS),
    ):
        await channel.declare_queue(name, durable=True, arguments=arguments)
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=name)
    await events.publish(aio_pika.Message(b"{}"), routing_key="MESSAGE_CREATE")
    # the commands of shard 0: a queue with its dead-letter queue, bound to their exchanges
    await channel.declare_exchange(t.commands_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    spec = QueueSpec(
        t.commands_queue(0), t.commands_exchange, (t.commands_routing_key(0),), "classic"
    )
    await declare_queue(connection.channel, t, spec)
    # a saved session, published through the default exchange and peeked at
    sessions = await channel.declare_queue(
        f"{group}.sessions.0",
        durable=True,
        arguments={"x-queue-type": "classic", "x-max-length": 1, "x-overflow": "drop-head"},
    )
    await channel.default_exchange.publish(aio_pika.Message(b"session"), routing_key=sessions.name)
    message = await get_eventually(sessions)
    assert message.body == b"session"
    await message.nack(requeue=True)
    # an identify lock, and the fatal-block record
    await channel.declare_queue(f"{group}.identify.1.0", exclusive=True, auto_delete=True)
    await channel.declare_queue(f"{group}.fatal", durable=True)
    # the shared identify quota and the exclusive lock around changing it
    await channel.declare_queue(f"{group}.quota.abc123", durable=True)
    await channel.declare_queue(f"{group}.quota.abc123.lock", exclusive=True, auto_delete=True)
    await channel.close()


async def test_each_role_can_do_its_job_and_a_worker_nothing_more(
    role_urls: dict[str, str],
    group: str,
    connect: Callable[[str], Awaitable[AbstractRobustConnection]],
) -> None:
    gateway = await connect(role_urls["gateway"])
    await gateway_does_its_job(gateway, group)

    worker = await connect(role_urls["worker"])
    t = Topology(group)
    channel = await worker.channel()
    # its own queue (declaring the events exchange and DLX too), a helper queue that
    # dead-letters into the events exchange (raid-guard's delay queue), its dead letters
    declared = await declare_queue(
        worker.channel, t, QueueSpec(t.worker_queue("ping"), group, ("A",))
    )
    queue = await channel.get_queue(declared.name, ensure=False)
    await channel.declare_queue(
        delay_queue_name(group, "raid-guard.restore", 150),
        durable=True,
        arguments=delay_queue_arguments(group, "raid-guard.restore", 150),
    )
    await channel.default_exchange.publish(aio_pika.Message(b"retry"), routing_key=queue.name)
    dlx = await channel.get_exchange(t.dlx, ensure=False)
    await dlx.publish(aio_pika.Message(b"dead"), routing_key=queue.name)
    commands = await channel.get_exchange(t.commands_exchange, ensure=False)
    await commands.publish(aio_pika.Message(b"{}"), routing_key=t.commands_routing_key(0))
    assert (await get_eventually(queue)).body == b"retry"  # it reads its own queue
    await channel.close()

    # ...and not the gateway's resources.
    async def delete(name: str) -> Callable[[AbstractChannel], Awaitable[Any]]:
        async def action(channel: AbstractChannel) -> Any:
            return await channel.queue_delete(name)

        return action

    assert await refused(worker, await delete(f"{group}.sessions.0"))
    assert await refused(worker, await delete(t.commands_queue(0)))
    assert await refused(worker, await delete(t.unrouted_queue))
    assert await refused(worker, await delete(t.oversize_queue))

    async def read_sessions(channel: AbstractChannel) -> Any:
        sessions = await channel.get_queue(f"{group}.sessions.0", ensure=False)
        return await sessions.get(timeout=5, fail=False)

    assert await refused(worker, read_sessions)

    async def ignore(message: AbstractIncomingMessage) -> None:
        pass

    async def consume_commands(channel: AbstractChannel) -> Any:
        commands = await channel.get_queue(t.commands_queue(0), ensure=False)
        return await commands.consume(ignore)

    assert await refused(worker, consume_commands)

    async def identify_lock(channel: AbstractChannel) -> Any:
        return await channel.declare_queue(
            f"{group}.identify.1.0-other", exclusive=True, auto_delete=True
        )

    assert await refused(worker, identify_lock)

    async def quota_lock(channel: AbstractChannel) -> Any:
        return await channel.declare_queue(
            f"{group}.quota.abc123.lock", exclusive=True, auto_delete=True
        )

    assert await refused(worker, quota_lock)

    async def named_like_the_gateway(channel: AbstractChannel) -> Any:
        return await channel.declare_queue(f"{group}.sessions", durable=True)

    assert await refused(worker, named_like_the_gateway)

    async def declare_commands_exchange(channel: AbstractChannel) -> Any:
        return await channel.declare_exchange(
            t.commands_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )

    assert await refused(worker, declare_commands_exchange)

    async def outside_the_group(channel: AbstractChannel) -> Any:
        return await channel.declare_queue(f"x{group}.ping", durable=True)

    assert await refused(worker, outside_the_group)
    # The gateway's resources are all still there.
    check = await gateway.channel()
    for name in (f"{group}.sessions.0", t.commands_queue(0), t.unrouted_queue):
        await check.declare_queue(name, passive=True)
    await check.close()


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
    connect: Callable[[str], Awaitable[AbstractRobustConnection]],
) -> None:
    gateway = await connect(role_urls["gateway"])
    await gateway_does_its_job(gateway, group)
    interactions = await connect(role_urls["interactions"])

    async def read_sessions(channel: AbstractChannel) -> Any:
        sessions = await channel.get_queue(f"{group}.sessions.0", ensure=False)
        return await sessions.get(timeout=5, fail=False)

    async def bind_to_events(channel: AbstractChannel) -> Any:
        queue = await channel.declare_queue(
            f"{group}.interactions.ingress.spy", exclusive=True, auto_delete=True
        )
        return await queue.bind(group, routing_key="MESSAGE_CREATE")

    async def declare_a_worker_queue(channel: AbstractChannel) -> Any:
        return await channel.declare_queue(f"{group}.ping", durable=True)

    assert await refused(interactions, read_sessions)
    assert await refused(interactions, bind_to_events)
    assert await refused(interactions, declare_a_worker_queue)
