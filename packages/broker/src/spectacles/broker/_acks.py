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

import struct

__all__ = ["AckWindow", "encode_ack", "encode_nack"]

_ack = struct.Struct(">BHIHHQBB")  # frame head, class, method, delivery tag, bits, frame end


def encode_ack(channel: int, tag: int, multiple: bool) -> bytes:
    """One ``basic.ack`` method frame."""
    return _ack.pack(1, channel, 13, 60, 80, tag, 1 if multiple else 0, 0xCE)


def encode_nack(channel: int, tag: int, requeue: bool) -> bytes:
    """One ``basic.nack`` (not multiple) method frame."""
    return _ack.pack(1, channel, 13, 60, 120, tag, 2 if requeue else 0, 0xCE)


class AckWindow:
    """The settled tags of one channel, and the acks still to write (a new channel: a new one)."""

    __slots__ = ("_floor", "_pending", "_settled")

    def __init__(self) -> None:
        self._floor = 0  # every tag <= floor is settled (acked, or nacked / rejected alone)
        self._settled: set[int] = set()  # settled tags above the floor
        self._pending: list[int] = []  # to ack in the next write

    def add(self, tag: int) -> bool:
        """Queue ``tag`` for the next write; True if it is the first one since the last write."""
        pending = self._pending
        pending.append(tag)
        return len(pending) == 1

    def settled(self, tag: int) -> None:
        """Record ``tag`` as settled on its own (nacked or rejected, already written)."""
        self._settled.add(tag)
        self._advance()

    def _advance(self) -> None:
        floor, settled = self._floor, self._settled
        while floor + 1 in settled:
            floor += 1
            settled.remove(floor)
        self._floor = floor

    def take(self) -> list[tuple[int, bool]]:
        """The ack frames (tag, multiple) that settle every queued tag, in write order."""
        tags, self._pending = self._pending, []
        if not tags:
            return []
        floor = self._floor
        if len(tags) == 1 and tags[0] == floor + 1 and not self._settled:
            self._floor = tags[0]  # the common case: in order, nothing above
            return [(tags[0], False)]
        self._settled.update(tags)
        self._advance()
        floor = self._floor
        covered = max((tag for tag in tags if tag <= floor), default=0)
        frames = [(covered, True)] if covered else []
        frames.extend((tag, False) for tag in tags if tag > floor)
        return frames
