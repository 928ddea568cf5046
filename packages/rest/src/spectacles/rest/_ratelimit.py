"""Client-side rate limiting that follows Discord's headers instead of guessing.

Discord limits each route per ``(bucket hash, major parameter)`` and each bot globally
(50 requests/s). The limiter learns a route's bucket hash and its limit/remaining/reset from
the ``X-RateLimit-*`` headers of every answer, makes a request wait while its bucket is spent,
and lets only one request probe a bucket it knows nothing about yet, so concurrent callers
never stampede into 429s. One limiter must see every request sent with a token for its
accounting to hold: share it between clients of one process, and put the REST proxy in front
of several processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import msgspec

from spectacles.observability import get_logger

__all__ = ["GlobalRateLimit", "RateLimitHeaders", "RateLimitTicket", "RateLimiter", "parse_429"]

_log = get_logger("spectacles.rest.ratelimit")

#: Two ``X-RateLimit-Reset`` values closer than this belong to the same window: Discord
#: computes the header per answer, so one window's values differ by rounding (milliseconds),
#: while consecutive windows differ by at least their period (a second or more on Discord).
_SAME_WINDOW_TOLERANCE: Final = 0.05
#: When a spent bucket's reset time is unknown and nothing is in flight to tell us, assume
#: this long (Discord's shortest windows are about a second).
_UNKNOWN_RESET_FALLBACK: Final = 1.0
#: Forget buckets idle for this long (memory stays bounded with many channels).
_BUCKET_IDLE_TTL: Final = 300.0
_SWEEP_INTERVAL: Final = 60.0


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The ``X-RateLimit-*`` headers of one answer."""

    limit: int
    remaining: int
    reset: float
    reset_after: float
    bucket: str | None
    is_global: bool = False
    scope: str | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders | None:
        """Read the headers (``headers`` must be case-insensitive); None when absent."""
        try:
            limit = int(headers["X-RateLimit-Limit"])
            remaining = int(headers["X-RateLimit-Remaining"])
            reset_after = float(headers["X-RateLimit-Reset-After"])
        except (KeyError, ValueError):
            return None
        try:
            reset = float(headers["X-RateLimit-Reset"])
        except (KeyError, ValueError):
            reset = round(time.time() + reset_after, 3)
        return cls(
            limit=limit,
            remaining=remaining,
            reset=reset,
            reset_after=reset_after,
            bucket=headers.get("X-RateLimit-Bucket"),
            is_global=headers.get("X-RateLimit-Global", "").lower() == "true",
            scope=headers.get("X-RateLimit-Scope"),
        )


class GlobalRateLimit:
    """At most ``limit`` requests in any ``period`` seconds (a sliding log, safe for any window).

    A token bucket would allow a burst of ``limit`` followed by a steady ``limit``/``period``,
    which is nearly twice the limit inside one second; a log of the last ``limit`` send times
    never exceeds it, whatever window Discord counts with.
    """

    def __init__(
        self,
        limit: int = 50,
        period: float = 1.0,
        *,
        margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or period <= 0:
            raise ValueError(
                f"global rate limit needs limit >= 1 and period > 0, got {limit}/{period}"
            )
        self.limit = limit
        self.period = period
        self._margin = margin
        self._clock = clock
        self._sent: deque[float] = deque(maxlen=limit)
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Stop every request for ``seconds`` (after a global 429)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds + self._margin)

    async def acquire(self) -> None:
        """Wait for a slot, then take it."""
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._paused_until - now
                if len(self._sent) == self.limit:
                    wait = max(wait, self._sent[0] + self.period + self._margin - now)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self._sent.append(self._clock())


class _Bucket:
    """State of one ``(bucket, major parameter)`` pair; all times are on the limiter's clock."""

    __slots__ = (
        "changed",
        "gate",
        "in_flight",
        "last_used",
        "limit",
        "refilled",
        "remaining",
        "reset_at",
        "unlimited",
        "window",
    )

    def __init__(self, now: float) -> None:
        self.limit: int | None = None  # unknown until the first answer: one probe at a time
        self.remaining = 1
        self.reset_at = math.inf  # when `remaining` refills; inf = not known yet
        self.window: float | None = None  # the server's X-RateLimit-Reset: identifies a window
        self.refilled = False  # refilled locally since `window`: its late answers are stale
        self.in_flight = 0
        self.unlimited = False
        self.last_used = now
        self.gate = asyncio.Lock()  # FIFO: requests leave in the order they arrived
        self.changed = asyncio.Event()

    def is_idle(self, now: float) -> bool:
        return (
            self.in_flight == 0
            and not self.gate.locked()
            and now - self.last_used > _BUCKET_IDLE_TTL
            and (self.reset_at <= now or self.unlimited or self.reset_at == math.inf)
        )

    async def acquire(self, clock: Callable[[], float]) -> float:
        """Take one request slot, waiting while the bucket is spent; returns seconds waited."""
        started = clock()
        async with self.gate:
            while not self.unlimited:
                now = clock()
                if now >= self.reset_at:
                    # Our view of the window ended (we add latency + margin, so the server's
                    # ended earlier). Requests still in flight may land in the new window.
                    self.remaining = max((self.limit or 1) - self.in_flight, 0)
                    self.reset_at = math.inf
                    self.refilled = True
                if self.remaining > 0:
                    break
                if self.reset_at == math.inf and self.in_flight == 0:
                    # Spent, nothing in flight will tell us when it refills: assume a window.
                    self.reset_at = now + _UNKNOWN_RESET_FALLBACK
                self.changed.clear()
                timeout = None if self.reset_at == math.inf else self.reset_at - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), timeout)
            self.remaining -= 1
            self.in_flight += 1
            self.last_used = clock()
            return self.last_used - started

    def release(
        self, now: float, info: RateLimitHeaders | None, *, status: int | None, margin: float
    ) -> None:
        """Account for the answer (``status`` None: no answer) of a request in flight."""
        self.in_flight -= 1
        self.last_used = now
        if info is not None:
            self.learn(now, info, margin)
        elif self.limit is None:
            if status is not None and 200 <= status < 300:
                self.unlimited = True  # success without headers: the route has no limit
            else:
                self.remaining = max(1 - self.in_flight, 0)  # still unknown: allow a new probe
        self.changed.set()

    def learn(self, now: float, info: RateLimitHeaders, margin: float) -> None:
        """Update from an answer's headers, telling newer, current and late windows apart."""
        self.limit = info.limit
        self.unlimited = False
        local_reset = now + info.reset_after + margin
        if self.window is not None and info.reset < self.window + _SAME_WINDOW_TOLERANCE:
            if info.reset <= self.window - _SAME_WINDOW_TOLERANCE or self.refilled:
                return  # a late answer from a window we already left: nothing new
            # Same window: our own count is exact unless another client spends this bucket,
            # which only a lower server count can reveal.
            self.remaining = min(self.remaining, info.remaining)
            if self.reset_at == math.inf:
                self.reset_at = local_reset
        else:
            # A newer window. Requests still in flight may land in it after this one was
            # counted: assume they all do (we may wait a little more, never send too many).
            remaining = max(info.remaining - self.in_flight, 0)
            self.remaining = min(remaining, self.remaining) if self.refilled else remaining
            self.window = info.reset
            self.refilled = False
            self.reset_at = local_reset

    def exhaust(self, now: float, retry_after: float, margin: float) -> None:
        """Mark spent until ``retry_after`` seconds from now (after a 429 for this bucket)."""
        self.remaining = 0
        self.unlimited = False
        until = now + retry_after + margin
        self.reset_at = until if self.reset_at == math.inf else max(self.reset_at, until)
        if self.limit is None:
            self.limit = 1
        self.changed.set()


class RateLimitTicket:
    """One acquired request slot; report the answer with :meth:`complete`."""

    __slots__ = ("_bucket", "_done", "_limiter", "bucket_route", "major", "waited")

    def __init__(
        self, limiter: RateLimiter, bucket: _Bucket, bucket_route: str, major: str, waited: float
    ) -> None:
        self._limiter = limiter
        self._bucket = bucket
        self._done = False
        self.bucket_route = bucket_route
        self.major = major
        self.waited = waited

    def complete(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        retry_after: float | None = None,
        is_global: bool | None = None,
    ) -> RateLimitHeaders | None:
        """Feed an answer's status and headers back into the limiter."""
        if self._done:
            return None
        self._done = True
        return self._limiter._on_answer(self, status, headers, retry_after, is_global)

    def abandon(self) -> None:
        """Release the slot when no answer came (connection error, timeout, cancellation)."""
        if not self._done:
            self._done = True
            self._bucket.release(
                self._limiter.clock(), None, status=None, margin=self._limiter.reset_margin
            )


class RateLimiter:
    """Per-bucket and global limits for ONE token, learned from Discord's headers."""

    def __init__(
        self,
        *,
        global_limit: int = 50,
        global_period: float = 1.0,
        reset_margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.reset_margin = reset_margin
        self.global_limit = GlobalRateLimit(
            global_limit, global_period, margin=reset_margin, clock=clock
        )
        self._route_buckets: dict[str, str] = {}  # "METHOD /template" -> bucket hash
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._next_sweep = clock() + _SWEEP_INTERVAL

    @property
    def bucket_count(self) -> int:
        """Buckets currently tracked (for metrics and tests)."""
        return len(self._buckets)

    def bucket_hash(self, bucket_route: str) -> str | None:
        """The bucket hash Discord reported for a route, if known yet."""
        return self._route_buckets.get(bucket_route)

    @contextlib.asynccontextmanager
    async def slot(
        self, bucket_route: str, major: str, *, use_global: bool = True
    ) -> AsyncIterator[RateLimitTicket]:
        """Wait until the request may be sent; the ticket must be completed with its answer."""
        ticket = await self.acquire(bucket_route, major, use_global=use_global)
        try:
            yield ticket
        finally:
            ticket.abandon()

    async def acquire(
        self, bucket_route: str, major: str, *, use_global: bool = True
    ) -> RateLimitTicket:
        """Take a slot in the route's bucket, then in the global limit."""
        now = self.clock()
        if now >= self._next_sweep:
            self._sweep(now)
        key = (self._route_buckets.get(bucket_route, bucket_route), major)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(now)
        waited = await bucket.acquire(self.clock)
        ticket = RateLimitTicket(self, bucket, bucket_route, major, waited)
        if use_global:
            try:
                await self.global_limit.acquire()
            except BaseException:
                ticket.abandon()
                raise
        if waited > 0.05:
            _log.debug("rest.ratelimit.waited", route=bucket_route, seconds=round(waited, 3))
        return ticket

    def pause_global(self, seconds: float) -> None:
        """Hold every request of this token (a global 429)."""
        self.global_limit.pause(seconds)

    def _on_answer(
        self,
        ticket: RateLimitTicket,
        status: int,
        headers: Mapping[str, str],
        retry_after: float | None,
        is_global: bool | None,
    ) -> RateLimitHeaders | None:
        now = self.clock()
        info = RateLimitHeaders.parse(headers)
        bucket = ticket._bucket
        bucket.release(now, info, status=status, margin=self.reset_margin)
        if info is not None and info.bucket:
            shared = self._adopt_hash(ticket, info.bucket)
            if shared is not bucket:
                # Another route already taught us this bucket: that state is the real one.
                shared.learn(now, info, self.reset_margin)
                shared.changed.set()
                bucket = shared
        if status == 429:
            wait = retry_after if retry_after is not None else _retry_after_header(headers, info)
            if is_global is None:
                is_global = headers.get("X-RateLimit-Global", "").lower() == "true" or (
                    headers.get("X-RateLimit-Scope") == "global"
                )
            if is_global:
                self.pause_global(wait)
            else:
                bucket.exhaust(now, wait, self.reset_margin)
        return info

    def _adopt_hash(self, ticket: RateLimitTicket, bucket_hash: str) -> _Bucket:
        """Map the route to Discord's bucket hash; returns the bucket that now holds its state."""
        key = (bucket_hash, ticket.major)
        if self._route_buckets.get(ticket.bucket_route) != bucket_hash:
            self._route_buckets[ticket.bucket_route] = bucket_hash
            provisional = (ticket.bucket_route, ticket.major)
            if self._buckets.get(provisional) is ticket._bucket:
                del self._buckets[provisional]
        return self._buckets.setdefault(key, ticket._bucket)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + _SWEEP_INTERVAL
        for key in [k for k, b in self._buckets.items() if b.is_idle(now)]:
            del self._buckets[key]


def _retry_after_header(headers: Mapping[str, str], info: RateLimitHeaders | None) -> float:
    try:
        return float(headers["Retry-After"])
    except (KeyError, ValueError):
        return info.reset_after if info is not None else _UNKNOWN_RESET_FALLBACK


class _RateLimitBody(msgspec.Struct):
    retry_after: float | None = None
    global_: bool = msgspec.field(default=False, name="global")


def parse_429(headers: Mapping[str, str], body: bytes) -> tuple[float, bool]:
    """``(retry_after seconds, is_global)``; the JSON body is more precise than the header."""
    parsed: _RateLimitBody | None
    try:
        parsed = msgspec.json.decode(body, type=_RateLimitBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        parsed = None
    retry_after = parsed.retry_after if parsed is not None else None
    if retry_after is None:
        try:
            retry_after = float(headers.get("Retry-After", "1"))
        except ValueError:
            retry_after = 1.0
    is_global = bool(parsed and parsed.global_) or (
        headers.get("X-RateLimit-Global", "").lower() == "true"
        or headers.get("X-RateLimit-Scope") == "global"
    )
    return retry_after, is_global
