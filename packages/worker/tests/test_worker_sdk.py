"""Worker SDK on a real RabbitMQ: typed events, context, dead letters, health, graceful stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from spectacles.broker.admin import BrokerAdmin, Received
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings
from spectacles.models import GuildMemberAdd, MessageCreate
from spectacles.rest import RestClient
from spectacles.worker import Context, Worker, WorkerConfigError, WorkerSettings

from .conftest import eventually

MESSAGE = {
    "id": "1200000000000000001",
    "channel_id": "1200000000000000002",
    "guild_id": "1200000000000000003",
    "author": {"id": "1200000000000000004", "username": "alice"},
    "content": "hello",
    "timestamp": "2024-05-01T12:00:00+00:00",
}


@pytest.fixture
async def settings(
    amqp_url: str, unique_name: str, admin: BrokerAdmin
) -> AsyncIterator[WorkerSettings]:
    """Settings on a group of its own; deletes every exchange and queue of that group after."""
    yield WorkerSettings(
        discord_token="test-token-not-used",
        amqp_url=amqp_url,
        group=unique_name,
        discord_api_url="http://127.0.0.1:9/api/v10",
        concurrency=4,
        metrics_address="127.0.0.1:0",
    )
    await admin.cleanup(
        queues=(
            f"{unique_name}.sdk",
            f"{unique_name}.sdk.dead",
            f"{unique_name}.sdk-slow",
            f"{unique_name}.sdk-slow.dead",
            f"{unique_name}.sdk.shard0",
        ),
        exchanges=(unique_name, f"{unique_name}.dlx", f"{unique_name}.commands"),
    )


@pytest.fixture
async def publisher(settings: WorkerSettings) -> AsyncIterator[Publisher]:
    pub = await Publisher.connect(BrokerSettings(amqp_url=settings.amqp_url, group=settings.group))
    await pub.declare_events_exchange()
    try:
        yield pub
    finally:
        await pub.close()


async def dead_letters(
    admin: BrokerAdmin, queue: str, count: int, timeout: float = 10.0
) -> list[Received]:
    """Take ``count`` messages from a dead queue (waiting for them, bounded)."""
    return await admin.take(queue, count, timeout=timeout)


async def http_get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def publish_message(publisher: Publisher, body: bytes, *, seq: int = 7) -> None:
    await publisher.publish(
        "MESSAGE_CREATE",
        body,
        headers={"shard_id": 0, "seq": seq, "guild_id": "1200000000000000003"},
        message_id=f"0:session:{seq}",
        type="MESSAGE_CREATE",
    )


async def test_handler_gets_the_typed_event_and_its_context(
    settings: WorkerSettings, publisher: Publisher, admin: BrokerAdmin
) -> None:
    worker = Worker("sdk", settings=settings)
    seen: list[tuple[MessageCreate, Context]] = []

    @worker.on("MESSAGE_CREATE")
    async def on_message(message: MessageCreate, ctx: Context) -> None:
        seen.append((message, ctx))

    async with worker.running():
        assert worker.health_port
        status, body = await http_get(worker.health_port, "/readyz")
        assert status == 200, body
        assert json.loads(body)["consuming"] is True

        await publish_message(publisher, json.dumps(MESSAGE).encode())
        await eventually(lambda: len(seen) == 1)
        message, ctx = seen[0]
        assert isinstance(message, MessageCreate)
        assert message.content == "hello"
        assert message.author.username == "alice"
        assert ctx.event == "MESSAGE_CREATE"
        assert ctx.worker == "sdk"
        assert ctx.shard_id == 0
        assert ctx.message_id == "0:session:7"
        assert ctx.attempt == 1
        assert ctx.headers["seq"] == 7
        assert isinstance(ctx.rest, RestClient)
        assert ctx.rest is worker.rest  # one client (pool + rate limiter) per process

        await eventually(lambda: worker.health_port is not None)
        status, metrics = await http_get(worker.health_port, "/metrics")
        assert status == 200
        assert 'spectacles_worker_events_handled_total{event="MESSAGE_CREATE",worker="sdk"}' in (
            metrics
        )
        assert "spectacles_worker_handler_seconds_bucket" in metrics
    assert worker.health_port is None
    assert await admin.depth(f"{settings.group}.sdk") == 0


async def test_malformed_event_is_dead_lettered_at_once(
    settings: WorkerSettings, publisher: Publisher, admin: BrokerAdmin
) -> None:
    worker = Worker("sdk", settings=settings, max_attempts=5)
    calls: list[object] = []

    @worker.on("MESSAGE_CREATE")
    async def on_message(message: MessageCreate, ctx: Context) -> None:
        calls.append(message)

    async with worker.running():
        await publish_message(publisher, b'{"id": "not a snowflake"}')
        await publish_message(publisher, b"not json at all", seq=8)
        dead = await dead_letters(admin, f"{settings.group}.sdk.dead", 2)
        assert worker.health_port is not None
        _, metrics = await http_get(worker.health_port, "/metrics")
    assert calls == []
    for message in dead:
        assert "malformed MESSAGE_CREATE" in str(message.headers["x-error"])
    assert "spectacles_worker_events_dead_lettered_total{" in metrics
    assert 'reason="malformed"' in metrics


class Order(msgspec.Struct):
    guild_id: str
    level: int


async def test_custom_event_with_a_model_is_decoded_into_it_or_dead_lettered(
    settings: WorkerSettings, publisher: Publisher, admin: BrokerAdmin
) -> None:
    worker = Worker("sdk", settings=settings, max_attempts=5)
    seen: list[object] = []

    @worker.on("sdk.order", custom=True, model=Order)
    async def on_order(order: Order, ctx: Context) -> None:
        seen.append(order)

    async with worker.running():
        for body in (b'{"guild_id": "1", "level": 3}', b'{"guild_id": "1", "level": "high"}'):
            await publisher.publish("sdk.order", body, message_id=body.hex())
        (dead,) = await dead_letters(admin, f"{settings.group}.sdk.dead", 1)
        await eventually(lambda: len(seen) == 1)
    assert seen == [Order(guild_id="1", level=3)]
    assert "malformed sdk.order" in str(dead.headers["x-error"])


async def test_failing_handler_is_retried_then_dead_lettered(
    settings: WorkerSettings, publisher: Publisher, admin: BrokerAdmin
) -> None:
    worker = Worker("sdk", settings=settings, max_attempts=3)
    attempts: list[int] = []

    @worker.on("MESSAGE_CREATE")
    async def on_message(message: MessageCreate, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("discord said no (via amqp://bot:hunter2-secret@rabbit/)")

    async with worker.running():
        await publish_message(publisher, json.dumps(MESSAGE).encode())
        (dead,) = await dead_letters(admin, f"{settings.group}.sdk.dead", 1)
    assert attempts == [1, 2, 3]
    assert "discord said no" in str(dead.headers["x-error"])
    assert "hunter2-secret" not in str(dead.headers["x-error"])  # the header is scrubbed too


async def test_stop_finishes_in_flight_handlers_and_acks(
    settings: WorkerSettings, publisher: Publisher, admin: BrokerAdmin
) -> None:
    worker = Worker("sdk-slow", settings=settings)
    started = asyncio.Event()
    finished: list[str] = []

    @worker.on("GUILD_MEMBER_ADD")
    async def on_join(member: GuildMemberAdd, ctx: Context) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(member.user.username)

    body = {
        "guild_id": "1200000000000000003",
        "user": {"id": "1200000000000000009", "username": "bob"},
        "joined_at": "2024-05-01T12:00:00+00:00",
    }
    await worker.start()
    try:
        await publisher.publish("GUILD_MEMBER_ADD", json.dumps(body).encode())
        async with asyncio.timeout(10):
            await started.wait()
    finally:
        await worker.stop()
    assert finished == ["bob"]
    assert await admin.depth(f"{settings.group}.sdk-slow") == 0


def test_registration_rejects_unknown_and_duplicate_events() -> None:
    worker = Worker("sdk")

    async def handler(event: Any, ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="unknown dispatch event 'MESSAGE_CREATED'"):
        worker.on("MESSAGE_CREATE" + "D")(handler)
    worker.on("MESSAGE_CREATE")(handler)
    with pytest.raises(ValueError, match="already has a handler"):
        worker.on("MESSAGE_CREATE")(handler)
    worker.on("RAID_GUARD_TICK", custom=True)(handler)
    assert worker.events == ("MESSAGE_CREATE", "RAID_GUARD_TICK")
    with pytest.raises(ValueError, match="worker name"):
        Worker("has space")


async def test_start_without_handlers_or_rabbit_fails_fast(settings: WorkerSettings) -> None:
    from spectacles.broker.errors import BrokerUnavailable

    with pytest.raises(RuntimeError, match="no handlers"):
        await Worker("sdk", settings=settings).start()

    worker = Worker("sdk")

    @worker.on("MESSAGE_CREATE")
    async def on_message(message: MessageCreate, ctx: Context) -> None:
        return None

    unreachable = WorkerSettings(
        discord_token="t", amqp_url="amqp://guest:guest@127.0.0.1:1/", metrics_address="127.0.0.1:0"
    )
    with pytest.raises(BrokerUnavailable):
        await worker.start(unreachable)
    assert worker.health_port is None  # everything opened before the failure was closed


def test_settings_from_env_defaults_and_errors() -> None:
    settings = WorkerSettings.from_env({"DISCORD_TOKEN": "abc"})
    assert settings.amqp_url == "amqp://guest:guest@localhost:5672/"
    assert settings.group == "gateway"
    assert settings.discord_api_url == "https://discord.com/api/v10"
    assert settings.concurrency == 64
    assert settings.queue_type == "quorum"
    assert settings.metrics_address == "0.0.0.0:8080"
    assert "abc" not in repr(settings)

    custom = WorkerSettings.from_env(
        {
            "DISCORD_TOKEN": "abc",
            "AMQP_URL": "amqp://u:hunter2-secret@rabbit:5672/",
            "BROKER_GROUP": "bot",
            "DISCORD_API_URL": "http://sim:8000/api/v10",
            "WORKER_CONCURRENCY": "3",
            "WORKER_QUEUE_TYPE": "classic",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "JSON",
            "METRICS_ADDRESS": ":9100",
        }
    )
    assert (custom.group, custom.concurrency, custom.queue_type) == ("bot", 3, "classic")
    assert (custom.log_level, custom.log_format) == ("DEBUG", "json")
    assert "hunter2-secret" not in repr(custom)
    auto = WorkerSettings.from_env({"DISCORD_TOKEN": "abc", "LOG_FORMAT": "auto"})
    assert auto.log_format == "auto"

    cases: list[tuple[dict[str, str], str]] = [
        ({}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "a", "WORKER_CONCURRENCY": "many"}, "WORKER_CONCURRENCY"),
        ({"DISCORD_TOKEN": "a", "WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY"),
        ({"DISCORD_TOKEN": "a", "WORKER_QUEUE_TYPE": "stream"}, "WORKER_QUEUE_TYPE"),
        ({"DISCORD_TOKEN": "a", "AMQP_URL": "http://x"}, "AMQP_URL"),
        ({"DISCORD_TOKEN": "a", "BROKER_GROUP": "bad group"}, "BROKER_GROUP"),
        ({"DISCORD_TOKEN": "a", "DISCORD_API_URL": "discord.com"}, "DISCORD_API_URL"),
        ({"DISCORD_TOKEN": "a", "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"DISCORD_TOKEN": "a", "METRICS_ADDRESS": "8080"}, "METRICS_ADDRESS"),
    ]
    for env, key in cases:
        with pytest.raises(WorkerConfigError) as info:
            WorkerSettings.from_env(env)
        assert info.value.key == key, (env, info.value)
        assert str(info.value).startswith(f"{key}: ")


async def test_handler_sends_gateway_commands(
    settings: WorkerSettings, publisher: Publisher, admin: BrokerAdmin
) -> None:
    commands = f"{settings.group}.commands"
    shard_queue = f"{settings.group}.sdk.shard0"  # stands in for shard 0
    await admin.declare_exchange(commands, "direct")
    await admin.declare_queue(
        shard_queue, durable=False, exclusive=True, bind=(commands, "shard.0")
    )

    worker = Worker("sdk", settings=settings)
    sent: list[int] = []

    @worker.on("MESSAGE_CREATE")
    async def on_message(message: MessageCreate, ctx: Context) -> None:
        presence = {"since": None, "activities": [], "status": "idle", "afk": False}
        sent.append(await ctx.commands.send_to_guild(message.guild_id or 0, 1, 3, presence))

    async with worker.running():
        await publish_message(publisher, json.dumps(MESSAGE).encode())
        (command,) = await admin.take(shard_queue, timeout=10)
    assert sent == [0]
    assert json.loads(command.body) == {
        "op": 3,
        "d": {"since": None, "activities": [], "status": "idle", "afk": False},
    }
