"""Helpers for the worker SDK's tests; ``amqp_url`` and ``unique_name`` are the root conftest's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from spectacles.broker.admin import BrokerAdmin


@pytest.fixture
async def admin(amqp_url: str) -> AsyncIterator[BrokerAdmin]:
    """Topology and inspection of the RabbitMQ under test, in the broker's own types."""
    async with await BrokerAdmin.connect(amqp_url) as admin:
        yield admin


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
