"""The roster against a real RabbitMQ: members see each other, a leaver at once, a dead one late."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from spectacles.broker.lease import LeaseHolder
from spectacles.broker.roster import Roster
from spectacles.broker.settings import BrokerSettings

from .conftest import close_connections_named

INTERVAL = 0.2
TIMEOUT = 0.8

Join = Callable[..., "asyncio.Future[Roster]"]


@pytest.fixture
async def join(
    broker_settings: BrokerSettings, unique_name: str
) -> AsyncIterator[Callable[..., object]]:
    """Start a member ``{unique_name}-{tag}`` of the roster ``{unique_name}.roster``."""
    started: list[tuple[LeaseHolder, Roster]] = []

    async def start(
        tag: str, *, announce: bool = True, data: dict[str, int] | None = None
    ) -> Roster:
        holder = LeaseHolder(
            broker_settings,
            connection_name=f"{unique_name}-{tag}",
            heartbeat=1,
            probe_interval=0.1,
            probe_timeout=1.0,
        )
        await holder.start()
        roster = Roster(
            holder,
            f"{unique_name}.roster",
            tag,
            interval=INTERVAL,
            timeout=TIMEOUT,
            describe=lambda: dict(data or {}),
            announce=announce,
        )
        await roster.start()
        started.append((holder, roster))
        return roster

    yield start
    for holder, roster in started:
        await roster.close()
        await holder.close()
    admin_holder = LeaseHolder(broker_settings, connection_name=f"{unique_name}-cleanup")
    async with admin_holder:
        channel = await admin_holder._open_channel()
        await channel.exchange_delete(f"{unique_name}.roster")


async def until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_members_see_each_other_with_their_data(join: Callable[..., object]) -> None:
    a: Roster = await join("a", data={"shards": 1})  # type: ignore[misc]
    b: Roster = await join("b", data={"shards": 2})  # type: ignore[misc]
    await until(lambda: a.ids == ("a", "b") and b.ids == ("a", "b"))
    seen = {m.id: m.data for m in a.members()}
    assert seen == {"a": {"shards": 1}, "b": {"shards": 2}}
    assert all(m.pid > 0 and m.host for m in b.members())


async def test_a_leaving_member_is_gone_at_once(join: Callable[..., object]) -> None:
    a: Roster = await join("a")  # type: ignore[misc]
    b: Roster = await join("b")  # type: ignore[misc]
    await until(lambda: a.ids == ("a", "b"))
    await b.leave()
    # Well before the timeout: the leaver said so.
    assert await until(lambda: a.ids == ("a",), timeout=TIMEOUT / 2) < TIMEOUT / 2
    assert "b" in a.left


async def test_a_member_whose_connection_dies_is_gone_after_the_timeout(
    join: Callable[..., object], unique_name: str
) -> None:
    a: Roster = await join("a")  # type: ignore[misc]
    await join("b")
    await until(lambda: a.ids == ("a", "b"))
    changed_before = a.changed_at
    # In a thread: rabbitmqctl takes seconds, and a blocked loop would starve a's own probes.
    assert await asyncio.to_thread(close_connections_named, f"{unique_name}-b") == 1
    took = await until(lambda: a.ids == ("a",), timeout=TIMEOUT * 4)
    assert took >= TIMEOUT - INTERVAL * 2  # not before a peer could have missed announcements
    assert a.changed_at > changed_before


async def test_an_observer_hears_the_members_without_joining(join: Callable[..., object]) -> None:
    await join("a")
    observer: Roster = await join("observer", announce=False)  # type: ignore[misc]
    b: Roster = await join("b")  # type: ignore[misc]
    await until(lambda: observer.ids == ("a", "b"))
    await asyncio.sleep(INTERVAL * 3)
    assert "observer" not in b.ids
