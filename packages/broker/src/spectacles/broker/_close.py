"""Closing an AMQP connection or channel within a bound, even when the close never returns.

aiormq's close of a connection that is already dead can wait forever and ignore cancellation;
``asyncio.wait_for`` (Python 3.11) then waits for the cancelled close too, so its timeout does
not hold and a shutdown hangs. ``close_within`` waits at most ``timeout`` and abandons the close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

__all__ = ["close_within"]


async def close_within(closing: Awaitable[object], timeout: float) -> None:
    """Await ``closing`` for at most ``timeout`` seconds; errors and a stuck close are dropped."""
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            task.result()
        return
    task.cancel()  # asked, not awaited: a close that ignores cancellation is left behind
    task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit
