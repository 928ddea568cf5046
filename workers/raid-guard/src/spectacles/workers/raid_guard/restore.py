"""Durable end-of-raid: the verification restore is a delayed RabbitMQ message, not a timer.

A timer dies with its process; a message in a durable queue does not. At a raid, raid-guard
publishes (with a publisher confirm) a ``RestoreOrder`` to ``{group}.raid-guard.restore-delay``:
a durable queue nobody consumes, where the message's per-message expiration is the cooldown.
When it expires RabbitMQ dead-letters it to the events exchange with the routing key
``raid-guard.restore``, which the worker's own single-active-consumer queue is bound to. So the
order comes back to whichever replica is active *then* (the same one, or the standby that took
over), in order with the joins, and that replica ends the raid and restores the level.

The same queue answers "is a raid in progress in guild G?" after a failover: ``pending`` peeks
at the parked orders (got without ack, returned by closing the channel) for one of G's.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, Final

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel

from spectacles.broker import BROKER_FAILURES, Backoff, Broker, DeadLetter

__all__ = [
    "RESTORE_ROUTING_KEY",
    "RestoreLookupFailed",
    "RestoreNotScheduled",
    "RestoreOrder",
    "RestoreScheduler",
    "decode_order",
]

RESTORE_ROUTING_KEY: Final = "raid-guard.restore"
"""Routing key (on the events exchange) an expired order comes back with."""
_PUBLISH_ATTEMPTS: Final = 3
_PUBLISH_TIMEOUT: Final = 10.0
PEEK_LIMIT: Final = 1000
"""At most this many parked orders are looked at (one per raiding guild, plus retries)."""
PEEK_TIMEOUT: Final = 5.0
_BROKER_ERRORS: Final = BROKER_FAILURES


class RestoreOrder(msgspec.Struct, frozen=True, kw_only=True):
    """End ``guild_id``'s raid; set the level back to ``previous_level`` if it is still ours.

    ``previous_level`` is None when raid-guard did not raise the level (it was already HIGH),
    then the order only ends the raid. ``failures`` counts restore attempts that failed.
    """

    guild_id: str
    raid_id: str
    previous_level: int | None
    set_level: int
    failures: int = 0


class RestoreNotScheduled(Exception):
    """RabbitMQ did not confirm the order (unreachable, or it refused it)."""

    def __init__(self, raid_id: str, cause: str) -> None:
        super().__init__(f"restore order of raid {raid_id} not confirmed by RabbitMQ: {cause}")
        self.raid_id = raid_id
        self.cause = cause


class RestoreLookupFailed(Exception):
    """The delay queue could not be searched (RabbitMQ unreachable, queue gone, too slow)."""

    def __init__(self, guild_id: str, cause: str) -> None:
        super().__init__(f"could not look up a parked restore order of guild {guild_id}: {cause}")
        self.guild_id = guild_id
        self.cause = cause


def decode_order(payload: object) -> RestoreOrder:
    """A ``RestoreOrder`` from the worker's decoded body; a bad body is dead-lettered at once."""
    try:
        return msgspec.convert(payload, RestoreOrder)
    except msgspec.ValidationError as exc:
        raise DeadLetter(f"malformed {RESTORE_ROUTING_KEY} body: {exc}") from None


class RestoreScheduler:
    """Publishes ``RestoreOrder``s into the delay queue, each confirmed before returning."""

    def __init__(self, broker: Broker, *, worker: str) -> None:
        self._broker = broker
        topology = broker.topology
        self.delay_queue = f"{topology.worker_queue(worker)}.restore-delay"
        self._arguments: dict[str, Any] = {
            "x-queue-type": "classic",
            "x-dead-letter-exchange": topology.events_exchange,
            "x-dead-letter-routing-key": RESTORE_ROUTING_KEY,
        }

    async def declare(self) -> None:
        """Declare the delay queue (idempotent; every replica does it at start)."""
        channel = await self._broker.channel(timeout=_PUBLISH_TIMEOUT)
        try:
            await channel.declare_queue(self.delay_queue, durable=True, arguments=self._arguments)
        finally:
            await channel.close()

    async def schedule(self, order: RestoreOrder, delay_seconds: float) -> None:
        """Park ``order`` for ``delay_seconds``; returns once RabbitMQ confirmed it.

        Raises ``RestoreNotScheduled`` when that fails a few times in a row.
        """
        message = aio_pika.Message(
            msgspec.json.encode(order),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            expiration=timedelta(milliseconds=max(1, round(delay_seconds * 1000))),
            message_id=order.raid_id,
            type=RESTORE_ROUTING_KEY,
            headers={"guild_id": order.guild_id},
        )
        cause = ""
        backoff = Backoff(1.0, 4.0)
        for attempt in range(_PUBLISH_ATTEMPTS):
            if attempt:
                await backoff.sleep()
            try:
                await asyncio.wait_for(self._publish(message), _PUBLISH_TIMEOUT)
                return
            except _BROKER_ERRORS as exc:
                cause = f"{type(exc).__name__}: {exc}"
        raise RestoreNotScheduled(order.raid_id, cause)

    async def pending(
        self, guild_id: str, *, limit: int = PEEK_LIMIT, timeout: float = PEEK_TIMEOUT
    ) -> RestoreOrder | None:
        """The parked order of a raid still going on in ``guild_id``, if there is one.

        Every order stays parked: they are got without ack and go back to the queue, at their
        old positions and with their expirations, when the channel closes. Retry orders
        (``failures`` > 0) are skipped: their raid is over, only its restore is pending. Raises
        ``RestoreLookupFailed`` when RabbitMQ cannot answer within ``timeout``.
        """
        try:
            channel = await self._broker.channel(timeout=timeout)
        except _BROKER_ERRORS as exc:
            raise RestoreLookupFailed(guild_id, f"{type(exc).__name__}: {exc}") from None
        try:
            async with asyncio.timeout(timeout):
                return await self._find(channel, guild_id, limit)
        except _BROKER_ERRORS as exc:
            raise RestoreLookupFailed(guild_id, f"{type(exc).__name__}: {exc}") from None
        finally:
            # Closing the channel is what returns the peeked orders: bounded, never skipped.
            if not channel.is_closed:
                with contextlib.suppress(*_BROKER_ERRORS):
                    await asyncio.wait_for(channel.close(), _PUBLISH_TIMEOUT)

    async def _find(
        self, channel: AbstractChannel, guild_id: str, limit: int
    ) -> RestoreOrder | None:
        # passive: a lookup creates nothing; a missing queue is broker trouble, not "no raid".
        queue = await channel.declare_queue(self.delay_queue, passive=True)
        if not queue.declaration_result.message_count:
            return None
        for _ in range(limit):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                return None
            try:
                order = msgspec.json.decode(message.body, type=RestoreOrder)
            except msgspec.DecodeError:
                continue  # not ours to judge here; the worker dead-letters it when it expires
            if order.guild_id == guild_id and order.failures == 0:
                return order
        return None

    async def _publish(self, message: aio_pika.Message) -> None:
        channel = await self._broker.channel(
            publisher_confirms=True, on_return_raises=True, timeout=_PUBLISH_TIMEOUT
        )
        try:
            # Declared again so a queue deleted by an operator never swallows an order.
            await channel.declare_queue(self.delay_queue, durable=True, arguments=self._arguments)
            await channel.default_exchange.publish(
                message, routing_key=self.delay_queue, mandatory=True
            )
        finally:
            if not channel.is_closed:
                await channel.close()
