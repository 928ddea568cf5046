"""The identify queue: one IDENTIFY per `max_concurrency` bucket per interval, within quota.

Discord allows one IDENTIFY per bucket (`shard_id % max_concurrency`) every 5 s and a daily
quota (`session_start_limit`); exhausting the quota resets the bot token, so this queue refuses
rather than spends the last sessions: `reserve` IDENTIFYs (at least 1) are never spent. RESUME
is free and never goes through here.

Buckets count across every connection of the bot, not per process: the queue paces the shards of
this process itself, and a `BucketLock` (RabbitMQ-backed by default, see `identify_lock.py`)
keeps gateway processes sharing a bot out of each other's buckets. The quota is shared the same
way: a `QuotaLedger` counts every process' IDENTIFYs against one number.

Spacing: Discord measures when IDENTIFYs *arrive*. Two sent `interval` apart arrive closer
when the first one was held up (a busy server or event loop, the network). So the next IDENTIFY
of a bucket is spaced from the moment the server *answered* the previous one (READY, or op 9 /
a close, bounded by `interval`): the server took the previous one in before it answered, and
the next one cannot arrive before it is sent, so they are at least the spacing apart however
late the server processed the first. The spacing is the interval plus a margin of
`JITTER_MARGIN` of it (at least `MIN_JITTER_MARGIN` s). Buckets are also offset from each other
at start, so the IDENTIFYs of all buckets do not reach the server in one burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, Protocol

from spectacles.models import SessionStartLimit
from spectacles.observability import get_logger

from .errors import IdentifyBlocked, IdentifyLimitExceeded

__all__ = [
    "DEFAULT_IDENTIFY_INTERVAL",
    "DEFAULT_IDENTIFY_RESERVE",
    "JITTER_MARGIN",
    "MIN_JITTER_MARGIN",
    "BucketLock",
    "IdentifyBudget",
    "IdentifyQueue",
    "LocalBucketLock",
    "LocalQuotaLedger",
    "QuotaLedger",
    "identify_spacing",
]

log = get_logger("spectacles.gateway.identify")

DEFAULT_IDENTIFY_INTERVAL: Final = 5.0
# IDENTIFYs of the quota never spent: Discord resets the token of a bot that exhausts it.
DEFAULT_IDENTIFY_RESERVE: Final = 5
# Extra spacing, as a fraction of the interval and as an absolute floor (seconds): see above.
JITTER_MARGIN: Final = 0.05
MIN_JITTER_MARGIN: Final = 0.05
# After a failed refresh of /gateway/bot, the next try waits this long (seconds).
REFRESH_RETRY: Final = 30.0


def identify_spacing(interval: float) -> float:
    """Seconds between two IDENTIFYs of one bucket, as sent."""
    if interval <= 0:
        return 0.0
    return interval + max(interval * JITTER_MARGIN, MIN_JITTER_MARGIN)


class IdentifyBudget:
    """The process' view of `session_start_limit`, refreshed once its window has passed.

    `remaining` None means unknown quota (no /gateway/bot): nothing is counted. `reset_at` is
    wall-clock time, so processes can compare it.
    """

    def __init__(
        self,
        remaining: int | None,
        reset_after_ms: int = 0,
        *,
        reserve: int = DEFAULT_IDENTIFY_RESERVE,
        refresh: Callable[[], Awaitable[SessionStartLimit]] | None = None,
    ) -> None:
        self.remaining = remaining
        self.reset_at = time.time() + reset_after_ms / 1000
        self.reserve = max(1, reserve)
        self._refresh = refresh
        self._next_refresh = 0.0

    @property
    def reset_after_ms(self) -> int:
        """Milliseconds until the quota window resets (0 once passed)."""
        return max(0, int((self.reset_at - time.time()) * 1000))

    def spendable(self, remaining: int | None) -> int | None:
        """How many IDENTIFYs `remaining` allows, the reserve kept back."""
        return None if remaining is None else max(0, remaining - self.reserve)

    async def current(self) -> int | None:
        """`remaining`, re-fetched from Discord first when the window has passed."""
        now = time.time()
        if (
            self.remaining is not None
            and self._refresh is not None
            and now >= self.reset_at
            and now >= self._next_refresh
        ):
            try:
                limit = await self._refresh()
            except Exception as exc:  # keep the old (lower) count: never spend without knowing
                self._next_refresh = now + REFRESH_RETRY
                log.warning("could not refresh session_start_limit", error=str(exc))
            else:
                self.remaining = limit.remaining
                self.reset_at = time.time() + limit.reset_after / 1000
                log.info(
                    "session_start_limit refreshed",
                    remaining=limit.remaining,
                    reset_after_ms=limit.reset_after,
                )
        return self.remaining

    def refuse(self, wanted: int, remaining: int) -> IdentifyLimitExceeded:
        """The error for `wanted` IDENTIFYs that `remaining` cannot cover."""
        return IdentifyLimitExceeded(wanted, remaining, self.reset_after_ms, self.reserve)


class QuotaLedger(Protocol):
    """Counts one IDENTIFY against the quota shared by every gateway process of the bot."""

    async def spend(self, budget: IdentifyBudget) -> None:
        """Take one IDENTIFY or raise `IdentifyLimitExceeded`; updates `budget.remaining`."""

    async def close(self) -> None:
        """Release resources."""


class LocalQuotaLedger:
    """The quota of this process only: for a bot whose shards all run in this one process."""

    async def spend(self, budget: IdentifyBudget) -> None:
        """Decrement `budget` unless that would touch the reserve."""
        remaining = await budget.current()
        if remaining is None:
            return
        if remaining - 1 < budget.reserve:
            raise budget.refuse(1, remaining)
        budget.remaining = remaining - 1

    async def close(self) -> None:
        """Nothing to release."""


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
    __slots__ = ("answer", "answer_for", "last_sent", "lock", "offset")

    def __init__(self, offset: float) -> None:
        self.lock = asyncio.Lock()
        self.last_sent = float("-inf")  # when the server answered the last IDENTIFY (or it went)
        self.offset = offset  # first IDENTIFY of the bucket: this long after the queue's first
        self.answer = asyncio.Event()  # set by `answered` for the shard `answer_for`
        self.answer_for: int | None = None


class IdentifyQueue:
    """Paces IDENTIFYs of every shard of this process and counts them against the quota.

    `lock` orders this process against the others sharing the bot, `ledger` shares the quota
    count with them; the service sets both once RabbitMQ is connected, before any shard starts.
    `blocked`, once set (a fatal close), refuses every further IDENTIFY of this process.
    """

    def __init__(
        self,
        *,
        max_concurrency: int = 1,
        interval: float = DEFAULT_IDENTIFY_INTERVAL,
        remaining: int | None = None,
        reset_after_ms: int = 0,
        reserve: int = DEFAULT_IDENTIFY_RESERVE,
        refresh: Callable[[], Awaitable[SessionStartLimit]] | None = None,
        lock: BucketLock | None = None,
        ledger: QuotaLedger | None = None,
    ) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.interval = interval
        self.budget = IdentifyBudget(remaining, reset_after_ms, reserve=reserve, refresh=refresh)
        self.lock: BucketLock = lock or LocalBucketLock()
        self.ledger: QuotaLedger = ledger or LocalQuotaLedger()
        self.blocked: IdentifyBlocked | None = None
        spacing = identify_spacing(interval)
        # Bucket b first fires b/max_concurrency of a spacing after bucket 0: no burst.
        self._buckets = [
            _Bucket(spacing * b / self.max_concurrency) for b in range(self.max_concurrency)
        ]
        self._origin: float | None = None

    @property
    def remaining(self) -> int | None:
        """IDENTIFYs left in the quota as this process knows it (None: not counted)."""
        return self.budget.remaining

    @property
    def reserve(self) -> int:
        """IDENTIFYs of the quota never spent."""
        return self.budget.reserve

    def bucket_of(self, shard_id: int) -> int:
        """The identify bucket of `shard_id`."""
        return shard_id % self.max_concurrency

    def check_capacity(self, shards: int) -> None:
        """Refuse, before connecting anything, to start more sessions than the quota allows."""
        remaining = self.budget.remaining
        spendable = self.budget.spendable(remaining)
        if remaining is not None and spendable is not None and shards > spendable:
            raise self.budget.refuse(shards, remaining)

    def answered(self, shard_id: int) -> None:
        """The server answered the IDENTIFY of `shard_id` (READY): its bucket may move on."""
        bucket = self._buckets[self.bucket_of(shard_id)]
        if bucket.answer_for == shard_id:
            bucket.answer.set()

    @asynccontextmanager
    async def slot(self, shard_id: int) -> AsyncIterator[None]:
        """Hold the bucket of `shard_id` while its IDENTIFY is sent and until it is answered.

        After the block, the slot is kept until `answered(shard_id)` (READY), the caller is
        cancelled (op 9, a close: the connection ended) or `interval` passed; the next
        IDENTIFY of the bucket waits the spacing from then (see the module docstring).
        The local lock orders this process' shards first, so only one of them at a time waits
        for the bucket lock that orders the processes. The quota is spent last, once the
        IDENTIFY is certain to go out next.
        """
        index = self.bucket_of(shard_id)
        bucket = self._buckets[index]
        spacing = identify_spacing(self.interval)
        async with bucket.lock:
            self._check_blocked()
            now = time.monotonic()
            if self._origin is None:
                self._origin = now
            wait = max(bucket.last_sent + spacing, self._origin + bucket.offset) - now
            if wait > 0:
                await asyncio.sleep(wait)
            async with self.lock.hold(index, keep_for=spacing):
                self._check_blocked()
                await self.ledger.spend(self.budget)
                bucket.answer.clear()
                bucket.answer_for = shard_id
                try:
                    yield
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(bucket.answer.wait(), self.interval)
                finally:
                    bucket.answer_for = None
                    bucket.last_sent = time.monotonic()

    def _check_blocked(self) -> None:
        if self.blocked is not None:
            raise self.blocked
