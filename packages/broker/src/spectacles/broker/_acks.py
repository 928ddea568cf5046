"""Ack a channel's deliveries in as few frames as possible: one ``multiple`` ack per loop tick.

With prefetch N, handlers that finish in the same event-loop tick would each send their own
``basic.ack``; one ``basic.ack(multiple=True)`` for the highest tag does the same for a fraction
of the cost. ``multiple`` acks *every* outstanding tag up to it, so it only reaches up to the
highest tag below which every delivery on the channel is settled (delivery tags belong to one
channel and count 1, 2, 3 ...). A tag above a gap — an earlier handler still running, or
cancelled and left for redelivery — is acked on its own in the same write, so a slow handler
never holds finished messages back against the prefetch window.
"""

from __future__ import annotations

import asyncio
from typing import Final

import aiormq

from ._translate import BROKER_FAILURES

__all__ = ["AckBatcher"]

_ACK_FAILURES: Final = BROKER_FAILURES


class AckBatcher:
    """Coalesces the acks of one channel; a new channel gets a new batcher (tags restart at 1)."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self._floor = 0  # every tag <= floor is settled (acked, or nacked / rejected alone)
        self._settled: set[int] = set()  # settled tags above the floor
        self._pending: list[tuple[int, asyncio.Future[bool]]] = []  # to ack in the next write
        self._flusher: asyncio.Task[None] | None = None

    def ack(self, tag: int) -> asyncio.Future[bool]:
        """Ack ``tag`` with the next write; resolves True once written, False if the channel died.

        The write happens on the next loop tick, so every handler finishing in this tick shares
        it. Writes are sequential: a ``multiple`` ack never overtakes a single ack it covers.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((tag, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return done

    def settled(self, tag: int) -> None:
        """Record ``tag`` as settled on its own (acked after a republish, nacked, rejected)."""
        self._settled.add(tag)
        self._advance()

    def _advance(self) -> None:
        floor, settled = self._floor, self._settled
        while floor + 1 in settled:
            floor += 1
            settled.remove(floor)
        self._floor = floor

    async def _flush(self) -> None:
        batch: list[tuple[int, asyncio.Future[bool]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                written = await self._write([tag for tag, _ in batch])
                _resolve(batch, written)
                batch = []
        finally:
            # Only reached early when cancelled (the loop is closing): nothing more is written.
            _resolve(batch, False)
            _resolve(self._pending, False)
            self._pending = []
            self._flusher = None

    async def _write(self, tags: list[int]) -> bool:
        self._settled.update(tags)
        self._advance()
        floor = self._floor
        covered = max((tag for tag in tags if tag <= floor), default=0)
        frames = [(covered, True)] if covered else []
        frames.extend((tag, False) for tag in tags if tag > floor)
        last = len(frames) - 1
        try:
            for i, (tag, multiple) in enumerate(frames):
                # Only the last frame waits for the socket: frames are written in order.
                await self.channel.basic_ack(tag, multiple=multiple, wait=i == last)
        except _ACK_FAILURES:
            return False  # channel gone: RabbitMQ redelivers whatever was not acked
        return True


def _resolve(batch: list[tuple[int, asyncio.Future[bool]]], written: bool) -> None:
    for _, done in batch:
        if not done.done():  # a waiter cancelled at stop() cancels its future
            done.set_result(written)
