"""close_within: a close that ignores cancellation (aiormq on a dead connection) cannot hang us."""

from __future__ import annotations

import asyncio
import time

from spectacles.broker._close import close_within


async def _stubborn_close(released: asyncio.Event) -> None:
    """What aiormq's close of a dead connection does: waits, and swallows cancellation."""
    while not released.is_set():
        try:
            await released.wait()
        except asyncio.CancelledError:
            continue


async def test_a_close_that_ignores_cancellation_is_abandoned_after_the_timeout() -> None:
    released = asyncio.Event()
    started = time.monotonic()
    await close_within(_stubborn_close(released), 0.2)
    assert time.monotonic() - started < 1.0
    released.set()  # let the abandoned close end, so the loop closes cleanly
    await asyncio.sleep(0)


async def test_a_failing_close_is_dropped_and_a_quick_one_awaited() -> None:
    async def failing() -> None:
        raise ConnectionResetError("already gone")

    done: list[str] = []

    async def quick() -> None:
        done.append("closed")

    await close_within(failing(), 1.0)
    await close_within(quick(), 1.0)
    assert done == ["closed"]
