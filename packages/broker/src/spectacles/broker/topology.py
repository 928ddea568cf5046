"""Every exchange and queue name of the wire contract, and the functions that declare them.

Names live here and nowhere else, so a worker written in another language can be checked against
one file (and ``docs/wire-format.md``). Declarations are idempotent: every service declares what
it uses on each (re)connect, with the same arguments, so start-up order never matters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange

__all__ = [
    "DEAD_SUFFIX",
    "DEFAULT_MAX_INTERRUPTIONS",
    "OVERSIZE_QUEUE_ARGUMENTS",
    "UNROUTED_QUEUE_ARGUMENTS",
    "DeclaredQueue",
    "QueueSpec",
    "QueueType",
    "Topology",
    "dead_queue_arguments",
    "dead_queue_for",
    "declare_commands_exchange",
    "declare_dead_letter_exchange",
    "declare_events_exchange",
    "declare_queue",
    "server_major_version",
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
# RabbitMQ 4 reads -1 as "no delivery limit"; 3.x has no default limit and drops at once on -1.
_UNLIMITED: Final = -1

#: Returns without an ack (connection blips, crashed consumers) a message survives before it is
#: dead-lettered: RabbitMQ 4's own default delivery limit. Every return counts on 3.10 and 4.0
#: alike (channel close, connection close, nack/reject with requeue), including those of messages
#: only prefetched, so this budget is generous and separate from ``max_attempts``.
DEFAULT_MAX_INTERRUPTIONS: Final = 20

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

    ``delivery_limit`` (quorum only) makes RabbitMQ dead-letter a message that was returned that
    many times without an ack, e.g. because it keeps crashing the consumers. RabbitMQ counts
    *every* return, connection blips included, so it must be a generous backstop.
    ``legacy_delivery_limit`` is what earlier releases declared: an existing queue with it is
    used as it is (with a migration hint) instead of failing with 406.
    """

    name: str
    exchange: str
    routing_keys: tuple[str, ...]
    queue_type: QueueType = "quorum"
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    legacy_delivery_limit: int | None = field(default=None, compare=False)

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

    def legacy_arguments(self, dlx: str) -> dict[str, Any] | None:
        """The arguments earlier releases declared this queue with, when they differ."""
        if self.queue_type != "quorum" or self.legacy_delivery_limit in (None, self.delivery_limit):
            return None
        args = self.arguments(dlx)
        args[_ARG_DELIVERY_LIMIT] = self.legacy_delivery_limit
        return args


@dataclass(frozen=True, slots=True)
class DeclaredQueue:
    """A declared queue; ``hints`` say what an operator should migrate (old arguments in use)."""

    name: str
    hints: tuple[str, ...] = ()


async def server_major_version(channel: AbstractChannel) -> int:
    """Major version of the RabbitMQ behind ``channel`` (from the handshake); 0 if unknown."""
    underlay = await channel.get_underlay_channel()
    properties = getattr(underlay.connection, "server_properties", None) or {}
    version = properties.get("version", b"")
    if isinstance(version, bytes):
        version = version.decode("ascii", "replace")
    major = str(version).split(".", 1)[0]
    return int(major) if major.isdigit() else 0


def dead_queue_arguments(queue_type: QueueType, server_major: int) -> dict[str, Any]:
    """Arguments of a ``.dead`` queue: it must never drop a message on its own.

    A quorum queue on RabbitMQ 4 has a delivery limit of 20 unless told otherwise, and every
    return counts (listing included), so it gets ``x-delivery-limit: -1``. RabbitMQ 3.x has no
    default limit and would read -1 as 0, so there the argument is left out.
    """
    args: dict[str, Any] = {_ARG_QUEUE_TYPE: queue_type}
    if queue_type == "quorum" and server_major >= 4:
        args[_ARG_DELIVERY_LIMIT] = _UNLIMITED
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
    open_channel: Callable[[], Awaitable[AbstractChannel]], topology: Topology, spec: QueueSpec
) -> DeclaredQueue:
    """Declare ``spec``'s queue, its ``.dead`` queue, the DLX and every binding.

    The exchange named by ``spec.exchange`` is declared too (direct, durable) so a worker may start
    before the gateway. The ``.dead`` queue has the same type as the queue, no dead-lettering of
    its own and no delivery limit: it is where messages stop. A queue that exists with the
    arguments of an earlier release is kept (RabbitMQ refuses to change arguments) and reported
    in ``hints``; other mismatches raise ``aiormq.exceptions.ChannelPreconditionFailed``.
    Declarations use their own channels (a refused one closes its channel).
    """
    hints: list[str] = []
    channel = await open_channel()
    try:
        exchange = await channel.declare_exchange(
            spec.exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dlx = await declare_dead_letter_exchange(channel, topology)
        major = await server_major_version(channel)
        dead_args = dead_queue_arguments(spec.queue_type, major)
        legacy_dead = {_ARG_QUEUE_TYPE: spec.queue_type}
        channel, used = await _declare_either(
            channel, open_channel, spec.dead_queue, dead_args, legacy_dead
        )
        if used is not dead_args:
            hints.append(
                f"dead-letter queue {spec.dead_queue!r} was declared by an earlier release and "
                "keeps RabbitMQ's default delivery limit (20 on RabbitMQ 4), so letters can be "
                "dropped after 20 returns; lift it with a policy, e.g. rabbitmqctl set_policy "
                "--apply-to quorum_queues spectacles-dead '\\.dead$' '{\"delivery-limit\":-1}' "
                "(see docs/operations.md, Dead letters)"
            )
        dead = await channel.get_queue(spec.dead_queue, ensure=False)
        await dead.bind(dlx, routing_key=spec.name)
        args = spec.arguments(topology.dlx)
        channel, used = await _declare_either(
            channel, open_channel, spec.name, args, spec.legacy_arguments(topology.dlx)
        )
        if used is not args:
            hints.append(
                f"queue {spec.name!r} was declared by an earlier release with "
                f"x-delivery-limit={spec.legacy_delivery_limit}: a few connection blips can "
                "dead-letter messages that never failed; drain it and delete it so it is "
                f"declared again with x-delivery-limit={spec.delivery_limit} "
                "(see docs/operations.md, Dead letters)"
            )
        queue = await channel.get_queue(spec.name, ensure=False)
        for routing_key in _unique(spec.routing_keys):
            await queue.bind(exchange, routing_key=routing_key)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return DeclaredQueue(spec.name, tuple(hints))


async def _declare_either(
    channel: AbstractChannel,
    open_channel: Callable[[], Awaitable[AbstractChannel]],
    name: str,
    arguments: dict[str, Any],
    legacy: dict[str, Any] | None,
) -> tuple[AbstractChannel, dict[str, Any]]:
    """Declare ``name`` with ``arguments``, else (406) with ``legacy``; return the live channel."""
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
        return channel, arguments
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        if legacy is None:
            raise
        refused = exc
    channel = await open_channel()
    try:
        await channel.declare_queue(name, durable=True, arguments=legacy)
    except aiormq.exceptions.ChannelPreconditionFailed:
        raise refused from None  # neither ours nor the old arguments: name our mismatch
    except BaseException:
        with contextlib.suppress(Exception):
            await channel.close()
        raise
    return channel, legacy


def _unique(items: Iterable[str]) -> Sequence[str]:
    return list(dict.fromkeys(items))
