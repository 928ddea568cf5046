"""Gateway commands from workers: `{group}.commands`, routing key `shard.{id}`, sent to Discord.

Only presence (3), voice state (4), request guild members (8) and request soundboard sounds (31)
may pass, at most 4096 bytes, shaped `{"op": N, "d": {...}}`; anything else is dead-lettered at
once with the reason in `x-error`. What is sent is re-encoded from what was validated. Accepted
commands wait for the shard's send limit, which keeps slots for heartbeats, so a chatty worker
can never get the shard closed with 4008.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

from spectacles.broker.broker import Broker
from spectacles.broker.commands import encode_command, parse_command
from spectacles.broker.consumer import Consumer
from spectacles.broker.delivery import Delivery
from spectacles.broker.errors import DeadLetter, InvalidCommand
from spectacles.broker.queue_type import declarable_spec_type
from spectacles.broker.topology import QueueType
from spectacles.observability import get_logger

from . import metrics
from .shard import Shard

__all__ = ["CommandRelay", "validate_command_body"]

log = get_logger("spectacles.gateway.commands")

# How long a command waits for its shard to be READY before it is retried (then dead-lettered).
READY_TIMEOUT: Final = 30.0


def validate_command_body(body: bytes) -> bytes:
    """Check a command against the wire rules (`spectacles.broker.parse_command`).

    Returns the payload to send to Discord, re-encoded from what was validated (never the
    received bytes: a duplicate key could make Discord read something else); raises
    `DeadLetter` with the reason otherwise.
    """
    try:
        op, d = parse_command(body)
    except InvalidCommand as exc:
        raise DeadLetter(exc.reason) from None
    return encode_command(op, d)


class CommandRelay:
    """One consumer per shard of this process, forwarding its commands to that shard.

    `start()` subscribes the shards given at construction; in auto mode shards come and go
    with their leases (`add`, `remove`): a shard handed over stops consuming first, so its
    queued commands wait for the new owner.
    """

    def __init__(
        self, broker: Broker, shards: Mapping[int, Shard], queue_type: QueueType = "quorum"
    ) -> None:
        self._broker = broker
        self._shards = shards
        self._queue_type = queue_type
        self._consumers: dict[int, Consumer] = {}

    async def start(self) -> None:
        """Declare each shard's commands queue and start consuming it."""
        for shard in list(self._shards.values()):
            await self.add(shard)

    async def add(self, shard: Shard) -> None:
        """Start forwarding the commands of `shard` (its queue is declared when missing)."""
        topology = self._broker.topology
        shard_id = shard.shard_id

        def consumer_of(kind: QueueType) -> Consumer:
            return Consumer(
                self._broker,
                worker=f"commands.shard.{shard_id}",
                events=(),
                handler=self._handler(shard),
                prefetch=1,  # keep each shard's commands in order
                max_attempts=3,
                queue_type=kind,
                exchange=topology.commands_exchange,
                queue=topology.commands_queue(shard_id),
                routing_keys=[topology.commands_routing_key(shard_id)],
                stop_timeout=5.0,
            )

        # Quorum by default, so commands survive a node of a cluster; a queue that exists with
        # the other type keeps it (a warning says how to migrate) instead of a 406 at start.
        consumer = consumer_of(self._queue_type)
        kind = await declarable_spec_type(self._broker, consumer.spec)
        if kind != self._queue_type:
            consumer = consumer_of(kind)
        await self.remove(shard_id)
        await consumer.start()
        self._consumers[shard_id] = consumer

    async def remove(self, shard_id: int) -> None:
        """Stop forwarding the commands of `shard_id`; what is queued stays for its next owner."""
        consumer = self._consumers.pop(shard_id, None)
        if consumer is not None:
            await asyncio.gather(consumer.stop(timeout=2.0), return_exceptions=True)

    def _handler(self, shard: Shard) -> _CommandHandler:
        return _CommandHandler(shard)

    async def stop(self) -> None:
        """Stop consuming; commands not yet sent stay queued for the next run."""
        consumers, self._consumers = list(self._consumers.values()), {}
        await asyncio.gather(*(c.stop(timeout=2.0) for c in consumers), return_exceptions=True)


class _CommandHandler:
    def __init__(self, shard: Shard) -> None:
        self._shard = shard
        self._label = str(shard.shard_id)

    async def __call__(self, delivery: Delivery) -> None:
        try:
            payload = validate_command_body(delivery.body)
        except DeadLetter as exc:
            metrics.COMMANDS.labels(self._label, "rejected").inc()
            log.warning("command rejected", shard_id=self._shard.shard_id, reason=exc.reason)
            raise
        if not self._shard.is_alive:
            raise DeadLetter(f"shard {self._shard.shard_id} is stopped")
        await asyncio.wait_for(self._shard.send_command(payload), READY_TIMEOUT)
        metrics.COMMANDS.labels(self._label, "sent").inc()
