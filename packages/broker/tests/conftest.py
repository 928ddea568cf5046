"""Fixtures for the broker package's tests: a unique group per test, and cleanup of what it made."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest

from spectacles.broker.broker import Broker
from spectacles.broker.settings import BrokerSettings

#: How to run rabbitmqctl; e.g. RABBITMQCTL="docker compose exec -T rabbit rabbitmqctl" when the
#: broker under test runs in a container.
RABBITMQCTL = shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))


@pytest.fixture
def broker_settings(amqp_url: str, unique_name: str) -> BrokerSettings:
    return BrokerSettings(amqp_url=amqp_url, group=unique_name)


@pytest.fixture
async def amqp_cleanup(
    amqp_url: str, broker_settings: BrokerSettings
) -> AsyncIterator[Callable[..., None]]:
    """Register extra queue/exchange names; the group's standard names are always deleted."""
    group = broker_settings.group
    queues: set[str] = set()
    exchanges = {group, f"{group}.dlx", f"{group}.commands"}

    def register(*, queue: str | None = None, exchange: str | None = None) -> None:
        if queue:
            queues.add(queue)
        if exchange:
            exchanges.add(exchange)

    yield register
    connection = await aio_pika.connect(amqp_url)
    try:
        for name in sorted(queues):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
            with contextlib.suppress(Exception):
                await channel.close()
        for name in sorted(exchanges):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(name)
            with contextlib.suppress(Exception):
                await channel.close()
    finally:
        await connection.close()


@pytest.fixture
async def broker(
    broker_settings: BrokerSettings, unique_name: str, amqp_cleanup: Callable[..., None]
) -> AsyncIterator[Broker]:
    # Depends on amqp_cleanup so the broker (and any consumer left running by a failed test)
    # is closed before the cleanup deletes queues, instead of re-declaring them afterwards.
    b = await Broker.connect(
        broker_settings, connection_name=f"{unique_name}-broker", reconnect_delay=0.1
    )
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def raw_channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain confirm channel for publishing test input and inspecting queues."""
    connection = await aio_pika.connect(amqp_url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


def close_connections_named(name_prefix: str) -> int:
    """Server-side close (rabbitmqctl) of only the connections whose name starts with the prefix."""
    listing = subprocess.run(
        [*RABBITMQCTL, "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    closed = 0
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        if f'{{"connection_name","{name_prefix}' in props:
            subprocess.run(
                [*RABBITMQCTL, "-q", "close_connection", pid.strip(), "test: server-side close"],
                capture_output=True,
                timeout=30,
                check=True,
            )
            closed += 1
    return closed


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
