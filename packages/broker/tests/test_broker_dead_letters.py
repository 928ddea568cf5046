"""The operator's tool: dead letters can be listed, replayed to their origin, and purged."""

from __future__ import annotations

import os
import subprocess
import sys

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from spectacles.broker.broker import Broker
from spectacles.broker.consumer import Consumer
from spectacles.broker.dead_letters import list_dead, purge_dead, replay_dead
from spectacles.broker.delivery import Delivery
from spectacles.broker.errors import DeadLetter
from spectacles.broker.settings import BrokerSettings

from .conftest import eventually

# Also run against RabbitMQ 4 (scripts/rabbit4.sh).
pytestmark = pytest.mark.rmq4


async def _publish(channel: AbstractChannel, group: str, key: str, body: bytes, mid: str) -> None:
    exchange = await channel.get_exchange(group)
    await exchange.publish(
        aio_pika.Message(body, message_id=mid, headers={"shard_id": 0}), routing_key=key
    )


async def test_dead_letters_when_cause_fixed_then_replay_delivers_them_once(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    broken = True
    handled: list[tuple[str | None, int, str]] = []
    bystander: list[str | None] = []

    async def handler(delivery: Delivery) -> None:
        if broken:
            raise DeadLetter("permission missing")
        handled.append((delivery.message_id, delivery.attempt, delivery.routing_key))

    async def other_worker(delivery: Delivery) -> None:
        bystander.append(delivery.message_id)

    consumer = Consumer(broker, worker="dl", events=["E"], handler=handler)
    other = Consumer(broker, worker="dl-other", events=["E"], handler=other_worker)
    for c in (consumer, other):
        amqp_cleanup(queue=c.queue_name)
        amqp_cleanup(queue=c.dead_queue_name)
        await c.start()
    for i in range(3):
        await _publish(raw_channel, broker_settings.group, "E", f'{{"n":{i}}}'.encode(), f"m-{i}")

    async def three_dead() -> bool:
        return len(await list_dead(broker, "dl")) == 3

    await eventually(three_dead)
    listed = await list_dead(broker, "dl")
    assert [d.message_id for d in listed] == ["m-0", "m-1", "m-2"]  # peeking keeps the order
    assert all(d.error == "DeadLetter: permission missing" for d in listed)
    assert listed[0].routing_key == "E"
    assert listed[0].exchange == broker_settings.group
    assert listed[0].preview == '{"n":0}'

    broken = False
    assert await replay_dead(broker, "dl", limit=2) == 2
    await eventually(lambda: len(handled) == 2)
    assert await replay_dead(broker, "dl") == 1
    await eventually(lambda: len(handled) == 3)
    await consumer.stop()
    await other.stop()
    # a replayed message starts afresh (first attempt, once each), still named by its event, and
    # only the worker whose dead queue it came from sees it again
    assert sorted(handled) == [("m-0", 1, "E"), ("m-1", 1, "E"), ("m-2", 1, "E")]
    assert sorted(bystander) == ["m-0", "m-1", "m-2"]
    assert await list_dead(broker, "dl") == []


async def test_purge_dead_when_messages_present_then_counts_and_empties(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    async def reject(delivery: Delivery) -> None:
        raise DeadLetter("undecodable")

    consumer = Consumer(broker, worker="dlp", events=["E"], handler=reject)
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    await _publish(raw_channel, broker_settings.group, "E", b"\xff", "bad-1")
    await _publish(raw_channel, broker_settings.group, "E", b"\xfe", "bad-2")

    async def two_dead() -> bool:
        return len(await list_dead(broker, "dlp")) == 2

    await eventually(two_dead)
    await consumer.stop()
    assert await purge_dead(broker, "dlp") == 2
    assert await list_dead(broker, "dlp") == []


def test_cli_when_worker_unknown_then_one_clear_line_and_exit_1(
    amqp_url: str, unique_name: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spectacles.broker.dead_letters_cli", "list", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "AMQP_URL": amqp_url, "BROKER_GROUP": unique_name},
        check=False,
    )
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr
    assert f"{unique_name}.nope.dead" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("action", ["bogus"])
def test_cli_when_action_unknown_then_usage_error(action: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spectacles.broker.dead_letters_cli", action, "ping"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
