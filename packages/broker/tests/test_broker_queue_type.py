"""A queue that should be quorum but exists as classic keeps working (no 406 at start-up)."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractChannel

from spectacles.broker.broker import Broker
from spectacles.broker.consumer import Consumer
from spectacles.broker.delivery import Delivery
from spectacles.broker.queue_type import declarable_spec_type as declarable_type
from spectacles.broker.topology import QueueSpec

pytestmark = [pytest.mark.rmq4, pytest.mark.timeout(60)]


async def _noop(delivery: Delivery) -> None:
    return None


def _spec(unique_name: str, queue_type: str) -> QueueSpec:
    return QueueSpec(
        name=f"{unique_name}.q",
        exchange=unique_name,
        routing_keys=("EVENT",),
        queue_type=queue_type,  # type: ignore[arg-type]
        delivery_limit=3 if queue_type == "quorum" else None,
    )


async def test_new_queue_gets_the_type_asked_for(broker: Broker, unique_name: str) -> None:
    assert await declarable_type(broker, _spec(unique_name, "quorum")) == "quorum"


async def test_existing_classic_queue_keeps_its_type_and_is_consumable(
    broker: Broker, unique_name: str, raw_channel: AbstractChannel, amqp_cleanup: object
) -> None:
    classic = _spec(unique_name, "classic")
    await raw_channel.declare_queue(
        classic.name, durable=True, arguments=classic.arguments(broker.topology.dlx)
    )
    try:
        wanted = _spec(unique_name, "quorum")
        kind = await declarable_type(broker, wanted)
        assert kind == "classic"
        consumer = Consumer(
            broker,
            worker="q",
            events=("EVENT",),
            handler=_noop,
            queue=wanted.name,
            exchange=unique_name,
            queue_type=kind,
        )
        await consumer.start()  # would fail with 406 PRECONDITION_FAILED as quorum
        await consumer.stop()
    finally:
        await raw_channel.queue_delete(classic.name)
        await raw_channel.queue_delete(f"{classic.name}.dead")


async def test_existing_quorum_queue_stays_quorum(
    broker: Broker, unique_name: str, raw_channel: AbstractChannel
) -> None:
    quorum = _spec(unique_name, "quorum")
    await raw_channel.declare_queue(
        quorum.name, durable=True, arguments=quorum.arguments(broker.topology.dlx)
    )
    try:
        assert await declarable_type(broker, quorum) == "quorum"
    finally:
        await raw_channel.queue_delete(quorum.name)
