"""Every exchange and queue name of the wire contract, and the functions that declare them.

Names live here and nowhere else, so a worker written in another language can be checked against
one file (and ``docs/wire-format.md``). Declarations are idempotent: every service declares what
it uses on each (re)connect, with the same arguments, so start-up order never matters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

__all__ = [
    "DEAD_SUFFIX",
    "OVERSIZE_QUEUE_ARGUMENTS",
    "UNROUTED_QUEUE_ARGUMENTS",
    "QueueSpec",
    "QueueType",
    "Topology",
    "dead_queue_for",
    "declare_commands_exchange",
    "declare_dead_letter_exchange",
    "declare_events_exchange",
    "declare_queue",
]

QueueType = Literal["quorum", "classic"]

# Suffix of the queue collecting a queue's dead letters: gateway.ping -> gateway.ping.dead.
DEAD_SUFFIX: Final = ".dead"

# Header names and queue arguments RabbitMQ itself understands.
_ARG_QUEUE_TYPE: Final = "x-queue-type"
_ARG_DLX: Final = "x-dead-letter-exchange"
_ARG_DLX_ROUTING_KEY: Final = "x-dead-letter-routing-key"
_ARG_DELIVERY_LIMIT: Final = "x-delivery-limit"
_ARG_SINGLE_ACTIVE: Final = "x-single-active-consumer"

# `{group}.oversize` holds one small record per event too large to relay; bounded, oldest
# dropped first, so forgetting to read it cannot fill the broker.
OVERSIZE_QUEUE_ARGUMENTS: Final[dict[str, Any]] = {
    _ARG_QUEUE_TYPE: "quorum",
    "x-max-length": 10_000,
    "x-overflow": "drop-head",
}
# `{group}.unrouted` keeps the events no queue was bound to receive (published before any worker
# declared its queue); bounded by count and bytes, oldest dropped first.
UNROUTED_QUEUE_ARGUMENTS: Final[dict[str, Any]] = {
    _ARG_QUEUE_TYPE: "quorum",
    "x-max-length": 100_000,
    "x-max-length-bytes": 1024 * 1024 * 1024,
    "x-overflow": "drop-head",
}


@dataclass(frozen=True, slots=True)
class Topology:
    """The names one group (one gateway deployment) uses on RabbitMQ."""

    group: str = "gateway"

    @property
    def events_exchange(self) -> str:
        """Direct exchange the gateway publishes dispatch events to (routing key = event name)."""
        return self.group

    @property
    def dlx(self) -> str:
        """Direct exchange receiving dead letters; routing key = the queue they died in."""
        return f"{self.group}.dlx"

    @property
    def oversize_queue(self) -> str:
        """Quorum queue of records of events too large for RabbitMQ (the body is not kept)."""
        return f"{self.group}.oversize"

    @property
    def unrouted_queue(self) -> str:
        """Quorum queue of the events no queue was bound to receive (kept, not dropped)."""
        return f"{self.group}.unrouted"

    @property
    def commands_exchange(self) -> str:
        """Direct exchange carrying gateway commands (op 3/4/8/31) to the shard that sends them."""
        return f"{self.group}.commands"

    def worker_queue(self, worker: str) -> str:
        """Queue shared by every replica of ``worker`` (competing consumers)."""
        if not worker:
            raise ValueError("worker name must not be empty (it names the queue)")
        return f"{self.group}.{worker}"

    def dead_queue(self, worker: str) -> str:
        """Where ``worker``'s messages go after their last failed attempt."""
        return dead_queue_for(self.worker_queue(worker))

    @staticmethod
    def commands_routing_key(shard_id: int) -> str:
        """Routing key of the commands for one shard."""
        return f"shard.{shard_id}"

    def commands_queue(self, shard_id: int) -> str:
        """Queue the gateway consumes the commands for ``shard_id`` from."""
        return f"{self.commands_exchange}.{self.commands_routing_key(shard_id)}"


def dead_queue_for(queue: str) -> str:
    """Dead-letter queue name of any queue declared through :func:`declare_queue`."""
    return f"{queue}{DEAD_SUFFIX}"


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """How a consumed queue is declared; replicas must agree or RabbitMQ refuses the declaration.

    ``delivery_limit`` (quorum only) makes RabbitMQ dead-letter a message that was delivered that
    many extra times without an ack, e.g. because it keeps crashing the consumers.
    """

    name: str
    exchange: str
    routing_keys: tuple[str, ...]
    queue_type: QueueType = "quorum"
    single_active_consumer: bool = False
    delivery_limit: int | None = None

    def __post_init__(self) -> None:
        if self.queue_type not in ("quorum", "classic"):
            raise ValueError(f"queue_type must be 'quorum' or 'classic', not {self.queue_type!r}")
        if not self.routing_keys:
            raise ValueError(f"queue {self.name!r} needs at least one event / routing key to bind")

    @property
    def dead_queue(self) -> str:
        """Name of this queue's dead-letter queue."""
        return dead_queue_for(self.name)

    def arguments(self, dlx: str) -> dict[str, Any]:
        """Queue arguments: type, server-side dead-lettering into ``dlx``, optional SAC/limit."""
        args: dict[str, Any] = {
            _ARG_QUEUE_TYPE: self.queue_type,
            _ARG_DLX: dlx,
            _ARG_DLX_ROUTING_KEY: self.name,
        }
        if self.single_active_consumer:
            args[_ARG_SINGLE_ACTIVE] = True
        if self.queue_type == "quorum" and self.delivery_limit is not None:
            args[_ARG_DELIVERY_LIMIT] = self.delivery_limit
        return args


async def declare_events_exchange(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    """Declare the events exchange (direct, durable); the publisher and consumers both call it."""
    return await channel.declare_exchange(
        topology.events_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )


async def declare_dead_letter_exchange(
    channel: AbstractChannel, topology: Topology
) -> AbstractExchange:
    """Declare the group's dead-letter exchange (direct, durable)."""
    return await channel.declare_exchange(topology.dlx, aio_pika.ExchangeType.DIRECT, durable=True)


async def declare_commands_exchange(
    channel: AbstractChannel, topology: Topology
) -> AbstractExchange:
    """Declare the gateway-commands exchange (direct, durable)."""
    return await channel.declare_exchange(
        topology.commands_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )


async def declare_queue(
    channel: AbstractChannel, topology: Topology, spec: QueueSpec
) -> AbstractQueue:
    """Declare ``spec``'s queue, its ``.dead`` queue, the DLX and every binding; return the queue.

    The exchange named by ``spec.exchange`` is declared too (direct, durable) so a worker may start
    before the gateway. The ``.dead`` queue has the same type as the queue and no dead-lettering of
    its own: it is where messages stop.
    """
    exchange = await channel.declare_exchange(
        spec.exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dlx = await declare_dead_letter_exchange(channel, topology)
    dead = await channel.declare_queue(
        spec.dead_queue, durable=True, arguments={_ARG_QUEUE_TYPE: spec.queue_type}
    )
    await dead.bind(dlx, routing_key=spec.name)
    queue = await channel.declare_queue(
        spec.name, durable=True, arguments=spec.arguments(topology.dlx)
    )
    for routing_key in _unique(spec.routing_keys):
        await queue.bind(exchange, routing_key=routing_key)
    return queue


def _unique(items: Iterable[str]) -> Sequence[str]:
    return list(dict.fromkeys(items))
