"""The identify queue: one IDENTIFY per `max_concurrency` bucket per interval, within quota.

Discord allows one IDENTIFY per bucket (`shard_id % max_concurrency`) every 5 s and a daily
quota (`session_start_limit`); exhausting the quota resets the bot token, so this queue refuses
rather than spends the last sessions. RESUME is free and never goes through here.

Buckets count across every connection of the bot, not per process: the queue paces the shards of
this process itself, and a `BucketLock` (RabbitMQ-backed by default, see `identify_lock.py`)
keeps gateway processes sharing a bot out of each other's buckets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, Protocol

from .errors import IdentifyLimitExceeded

__all__ = [
    "DEFAULT_IDENTIFY_INTERVAL",
    "JITTER_MARGIN",
    "BucketLock",
    "IdentifyQueue",
    "LocalBucketLock",
]

DEFAULT_IDENTIFY_INTERVAL: Final = 5.0
# Extra spacing, as a fraction of the interval: Discord measures when IDENTIFYs arrive, and
# network jitter can bring two of them closer than they were sent.
JITTER_MARGIN: Final = 0.05


class BucketLock(Protocol):
    """Exclusive use of an identify bucket among every gateway process of the bot."""

    def hold(self, bucket: int, keep_for: float) -> AbstractAsyncContextManager[None]:
        """Own `bucket` from entry until `keep_for` seconds after exit (even a failed exit).

        Waits, however long it takes, while another process owns it; the keep after exit is
        what spaces that process' IDENTIFY from ours, and must not delay the caller.
        """

    async def close(self) -> None:
        """Give up every bucket still kept (the shards are stopped)."""


class LocalBucketLock:
    """No coordination: for a bot whose shards all run in this one process."""

    @asynccontextmanager
    async def hold(self, bucket: int, keep_for: float) -> AsyncIterator[None]:
        """Owned at once: the identify queue's own pacing is all there is."""
        yield

    async def close(self) -> None:
        """Nothing is kept."""


class _Bucket:
    __slots__ = ("last_sent", "lock")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.last_sent = float("-inf")


class IdentifyQueue:
    """Paces IDENTIFYs of every shard of this process and counts them against the quota.

    `lock` orders this process against the others sharing the bot; the service sets it once
    RabbitMQ is connected, before any shard starts.
    """

    def __init__(
        self,
        *,
        max_concurrency: int = 1,
        interval: float = DEFAULT_IDENTIFY_INTERVAL,
        remaining: int | None = None,
        reset_after_ms: int = 0,
        lock: BucketLock | None = None,
    ) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.interval = interval
        self.remaining = remaining
        self.reset_after_ms = reset_after_ms
        self.lock: BucketLock = lock or LocalBucketLock()
        self._buckets = [_Bucket() for _ in range(self.max_concurrency)]

    def bucket_of(self, shard_id: int) -> int:
        """The identify bucket of `shard_id`."""
        return shard_id % self.max_concurrency

    def check_capacity(self, shards: int) -> None:
        """Refuse, before connecting anything, to start more sessions than the quota allows."""
        if self.remaining is not None and shards > self.remaining:
            raise IdentifyLimitExceeded(shards, self.remaining, self.reset_after_ms)

    @asynccontextmanager
    async def slot(self, shard_id: int) -> AsyncIterator[None]:
        """Hold the bucket of `shard_id` while its IDENTIFY is sent.

        The interval is measured from the end of the previous holder's block, i.e. after its
        IDENTIFY went out, so the server never sees two of a bucket closer than `interval`.
        The local lock orders this process' shards first, so only one of them at a time waits
        for the bucket lock that orders the processes.
        """
        index = self.bucket_of(shard_id)
        bucket = self._buckets[index]
        spacing = self.interval * (1 + JITTER_MARGIN)
        async with bucket.lock:
            wait = bucket.last_sent + spacing - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self.lock.hold(index, keep_for=spacing):
                if self.remaining is not None:
                    if self.remaining <= 0:
                        raise IdentifyLimitExceeded(1, 0, self.reset_after_ms)
                    self.remaining -= 1
                try:
                    yield
                finally:
                    bucket.last_sent = time.monotonic()
