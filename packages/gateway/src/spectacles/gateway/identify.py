"""The identify queue: one IDENTIFY per `max_concurrency` bucket per interval, within quota.

Discord allows one IDENTIFY per bucket (`shard_id % max_concurrency`) every 5 s and a daily
quota (`session_start_limit`); exhausting the quota resets the bot token, so this queue refuses
rather than spends the last sessions. RESUME is free and never goes through here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from .errors import IdentifyLimitExceeded

__all__ = ["DEFAULT_IDENTIFY_INTERVAL", "IdentifyQueue"]

DEFAULT_IDENTIFY_INTERVAL: Final = 5.0
# Extra spacing, as a fraction of the interval: Discord measures when IDENTIFYs arrive, and
# network jitter can bring two of them closer than they were sent.
JITTER_MARGIN: Final = 0.05


class _Bucket:
    __slots__ = ("last_sent", "lock")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.last_sent = float("-inf")


class IdentifyQueue:
    """Paces IDENTIFYs of every shard of this process and counts them against the quota."""

    def __init__(
        self,
        *,
        max_concurrency: int = 1,
        interval: float = DEFAULT_IDENTIFY_INTERVAL,
        remaining: int | None = None,
        reset_after_ms: int = 0,
    ) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.interval = interval
        self.remaining = remaining
        self.reset_after_ms = reset_after_ms
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
        """
        bucket = self._buckets[self.bucket_of(shard_id)]
        async with bucket.lock:
            wait = bucket.last_sent + self.interval * (1 + JITTER_MARGIN) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.remaining is not None:
                if self.remaining <= 0:
                    raise IdentifyLimitExceeded(1, 0, self.reset_after_ms)
                self.remaining -= 1
            try:
                yield
            finally:
                bucket.last_sent = time.monotonic()
