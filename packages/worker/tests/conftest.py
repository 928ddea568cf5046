"""Helpers for the worker SDK's tests; ``amqp_url`` and ``unique_name`` are the root conftest's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Wait until ``check`` is true; fail the test with a clear message after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
