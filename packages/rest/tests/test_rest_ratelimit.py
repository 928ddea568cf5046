"""The limiter's bookkeeping, fed with Discord-shaped headers (the simulator tests cover HTTP)."""

import asyncio
import time

import pytest
from multidict import CIMultiDict

from spectacles.rest import GlobalRateLimit, RateLimiter, RateLimitHeaders

ROUTE = "POST /channels/{channel_id}/messages"


def headers(
    limit: int,
    remaining: int,
    reset_after: float,
    *,
    bucket: str = "abc",
    reset: float | None = None,
) -> CIMultiDict[str]:
    return CIMultiDict(
        {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Reset": f"{reset if reset is not None else time.time() + reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }
    )


def test_headers_parse_and_absent() -> None:
    info = RateLimitHeaders.parse(headers(5, 4, 1.5, reset=100.0))
    assert info is not None
    assert (info.limit, info.remaining, info.reset, info.reset_after, info.bucket) == (
        5,
        4,
        100.0,
        1.5,
        "abc",
    )
    assert RateLimitHeaders.parse(CIMultiDict()) is None


async def test_unknown_bucket_lets_one_probe_through_at_a_time() -> None:
    limiter = RateLimiter()
    first = await limiter.acquire(ROUTE, "1")
    second = asyncio.create_task(limiter.acquire(ROUTE, "1"))
    await asyncio.sleep(0.05)
    assert not second.done(), "a second request must wait for the probe's headers"
    first.complete(200, headers(5, 4, 1.0))
    ticket = await asyncio.wait_for(second, 1)
    ticket.complete(200, headers(5, 3, 1.0, reset=float(headers(5, 4, 1.0)["X-RateLimit-Reset"])))


async def test_other_major_parameter_is_a_separate_bucket() -> None:
    limiter = RateLimiter()
    await limiter.acquire(ROUTE, "1")  # probe in flight for channel 1
    other = await asyncio.wait_for(limiter.acquire(ROUTE, "2"), 1)
    other.abandon()


async def test_spent_bucket_waits_until_reset() -> None:
    limiter = RateLimiter(reset_margin=0.0)
    ticket = await limiter.acquire(ROUTE, "1")
    ticket.complete(200, headers(1, 0, 0.3))
    started = time.monotonic()
    ticket = await asyncio.wait_for(limiter.acquire(ROUTE, "1"), 2)
    assert time.monotonic() - started >= 0.29
    ticket.abandon()


async def test_concurrent_requests_never_exceed_remaining() -> None:
    limiter = RateLimiter()
    reset = time.time() + 5
    probe = await limiter.acquire(ROUTE, "1")
    probe.complete(200, headers(5, 4, 5.0, reset=reset))
    granted: list[object] = []

    async def take() -> None:
        granted.append(await limiter.acquire(ROUTE, "1"))

    tasks = [asyncio.create_task(take()) for _ in range(10)]
    await asyncio.sleep(0.1)
    assert len(granted) == 4, "4 left in the window: the other 6 must wait for the reset"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_late_answers_do_not_inflate_remaining() -> None:
    limiter = RateLimiter()
    reset = time.time() + 5
    probe = await limiter.acquire(ROUTE, "1")
    probe.complete(200, headers(5, 4, 5.0, reset=reset))
    a, b, c = [await limiter.acquire(ROUTE, "1") for _ in range(3)]
    # Discord processed a, b, c in order (remaining 3, 2, 1); the answers arrive c, b, a.
    c.complete(200, headers(5, 1, 5.0, reset=reset))
    b.complete(200, headers(5, 2, 5.0, reset=reset))
    a.complete(200, headers(5, 3, 5.0, reset=reset))
    last = await asyncio.wait_for(limiter.acquire(ROUTE, "1"), 1)
    blocked = asyncio.create_task(limiter.acquire(ROUTE, "1"))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "only one request was left in the window"
    blocked.cancel()
    last.abandon()


async def test_routes_with_the_same_bucket_hash_share_state() -> None:
    limiter = RateLimiter()
    reset = time.time() + 5
    get = await limiter.acquire("GET /channels/{channel_id}", "1")
    get.complete(200, headers(2, 1, 5.0, bucket="shared", reset=reset))
    patch = await limiter.acquire("PATCH /channels/{channel_id}", "1")
    patch.complete(200, headers(2, 0, 5.0, bucket="shared", reset=reset))
    assert limiter.bucket_hash("GET /channels/{channel_id}") == "shared"
    assert limiter.bucket_hash("PATCH /channels/{channel_id}") == "shared"
    blocked = asyncio.create_task(limiter.acquire("GET /channels/{channel_id}", "1"))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "both routes spent the one shared bucket"
    blocked.cancel()


async def test_bucket_429_holds_the_bucket_for_retry_after() -> None:
    limiter = RateLimiter(reset_margin=0.0)
    ticket = await limiter.acquire(ROUTE, "1")
    ticket.complete(429, CIMultiDict({"Retry-After": "1"}), retry_after=0.3)
    started = time.monotonic()
    (await asyncio.wait_for(limiter.acquire(ROUTE, "1"), 2)).abandon()
    assert time.monotonic() - started >= 0.29


async def test_global_429_holds_every_route() -> None:
    limiter = RateLimiter(reset_margin=0.0)
    ticket = await limiter.acquire(ROUTE, "1")
    ticket.complete(429, CIMultiDict({"X-RateLimit-Global": "true"}), retry_after=0.3)
    started = time.monotonic()
    (await asyncio.wait_for(limiter.acquire("GET /users/@me", ""), 2)).abandon()
    assert time.monotonic() - started >= 0.29


async def test_answer_without_headers_marks_route_unlimited() -> None:
    limiter = RateLimiter()
    (await limiter.acquire("GET /gateway", "")).complete(200, CIMultiDict())
    tickets = [await asyncio.wait_for(limiter.acquire("GET /gateway", ""), 1) for _ in range(5)]
    assert len(tickets) == 5


async def test_abandoned_probe_lets_the_next_request_probe() -> None:
    limiter = RateLimiter()
    (await limiter.acquire(ROUTE, "1")).abandon()
    (await asyncio.wait_for(limiter.acquire(ROUTE, "1"), 1)).abandon()


async def test_global_limit_is_a_sliding_window() -> None:
    limit = GlobalRateLimit(3, 0.3, margin=0.0)
    started = time.monotonic()
    for _ in range(3):
        await limit.acquire()
    assert time.monotonic() - started < 0.25
    await asyncio.wait_for(limit.acquire(), 2)
    assert time.monotonic() - started >= 0.29


def test_global_limit_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="limit"):
        GlobalRateLimit(0)


async def test_late_answer_from_a_finished_window_cannot_reopen_the_bucket() -> None:
    limiter = RateLimiter(reset_margin=0.0)
    old_window = time.time() + 0.2
    probe = await limiter.acquire(ROUTE, "1")
    probe.complete(200, headers(2, 1, 0.2, reset=old_window))
    late = await limiter.acquire(ROUTE, "1")  # spends the window; its answer comes late
    await asyncio.sleep(0.25)
    # Our view of the window ended: one slot for the new window (`late` may still land in it).
    current = await asyncio.wait_for(limiter.acquire(ROUTE, "1"), 1)
    blocked = asyncio.create_task(limiter.acquire(ROUTE, "1"))
    late.complete(200, headers(2, 0, 0.01, reset=old_window))
    await asyncio.sleep(0.3)
    assert not blocked.done(), "an answer from the old window must not refill the new one"
    current.complete(200, headers(2, 0, 0.2, reset=old_window + 0.45))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    (await asyncio.wait_for(blocked, 2)).abandon()
