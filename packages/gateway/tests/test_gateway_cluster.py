"""The gateway cluster (`shards.ids = "auto"`): 3 processes, 12 shards, real RabbitMQ.

Each promise has its fault here: exactly one owner per shard (the simulator counts a shard run
twice as `shard_overlaps`), failover by RESUME after a SIGKILL, handover on SIGTERM, balance on
every scale step, and a process cut off from RabbitMQ that stops relaying before anyone else
may own its shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cluster_kit import (
    SHARDS,
    Flood,
    GatewayCluster,
    cluster_cleanup,
    live_sessions_per_shard,
)
from gateway_testkit import (
    Control,
    EventSink,
    close_connections,
    connections_named,
    event_sink,
    running_simulator,
    wait_until,
)

from spectacles.simulator import Simulator

pytestmark = pytest.mark.timeout(240)

# SIGKILL to every orphaned shard READY again (issue 13), with the defaults' proportions.
FAILOVER_TARGET = 15.0
GIVEN = 'spectacles_gateway_cluster_handovers_total{direction="given"}'
TAKEN = 'spectacles_gateway_cluster_handovers_total{direction="taken"}'


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(shards=SHARDS) as simulator:
        yield simulator


@pytest.fixture
async def cluster(
    tmp_path: Path, sim: Simulator, amqp_url: str, group: str
) -> AsyncIterator[GatewayCluster]:
    async with (
        cluster_cleanup(amqp_url, group),
        GatewayCluster(tmp_path, sim, amqp_url, group) as gateways,
    ):
        yield gateways


async def assert_one_session_per_shard(control: Control) -> None:
    live = await live_sessions_per_shard(control)
    assert live == {shard: 1 for shard in range(SHARDS)}, live
    assert (await control.stats())["shard_overlaps"] == 0


async def wait_all_relayed(sink: EventSink, flood: Flood, timeout: float = 30.0) -> None:
    """Until every flooded event is in the sink; else say which seqs of which session miss."""
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: len(sink.ids("MESSAGE_CREATE")) >= flood.sent, timeout=timeout)
    relayed = sink.ids("MESSAGE_CREATE")
    assert len(relayed) == flood.sent, (len(relayed), flood.sent, _gaps(relayed))


def _gaps(ids: set[str]) -> dict[str, list[tuple[int, int]]]:
    """Runs of missing seqs in each session's relayed MESSAGE_CREATEs (`shard:session:seq`)."""
    seqs: dict[str, list[int]] = {}
    for message_id in ids:
        shard, session, seq = message_id.split(":")
        seqs.setdefault(f"{shard}:{session[:6]}", []).append(int(seq))
    gaps: dict[str, list[tuple[int, int]]] = {}
    for key, found in seqs.items():
        found.sort()
        holes = [(a + 1, b - 1) for a, b in itertools.pairwise(found) if b - a > 3]
        if holes:
            gaps[key] = holes
    return gaps


async def test_three_processes_settle_four_shards_each_with_twelve_identifies(
    cluster: GatewayCluster, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    control = Control(http, sim.base_url)
    await cluster.start_settled(http, "a", "b", "c")
    assert sorted((await cluster.shares(http)).values()) == [4, 4, 4]
    await assert_one_session_per_shard(control)
    assert (await control.stats())["identifies"] == SHARDS
    # What an operator sees: every process, its host and pid, and its shards.
    code, out = await cluster.status_cli("--json")
    assert code == 0, out
    view = json.loads(out)
    assert sorted(m["pid"] for m in view["members"]) == sorted(
        cluster.pid(name) for name in ("a", "b", "c")
    )
    assert all(set(m["shards"].values()) == {"ready"} for m in view["members"])
    assert view["unowned"] == []
    code, table = await cluster.status_cli()
    assert code == 0 and "3 gateway process(es)" in table and "unowned shards: none" in table


@pytest.mark.rmq4  # also against RabbitMQ 4 (make test-rmq4)
async def test_sigkill_mid_flood_survivors_resume_its_shards_within_the_target_losing_nothing(
    cluster: GatewayCluster, sim: Simulator, http: aiohttp.ClientSession, amqp_url: str, group: str
) -> None:
    control = Control(http, sim.base_url)
    await cluster.start_settled(http, "a", "b", "c")
    resumes_before = (await control.stats())["resumes"]
    async with event_sink(amqp_url, group, ["MESSAGE_CREATE"]) as sink:
        async with Flood(control) as flood:
            await wait_until(lambda: flood.sent > 2000, timeout=30)
            killed_at = time.monotonic()
            cluster.kill("b")
            took = await cluster.wait_settled(http, timeout=60)
            recovered = time.monotonic() - killed_at
            await asyncio.sleep(1.0)  # the flood reaches the moved shards too
        await wait_all_relayed(sink, flood)
        assert len(sink.ids("MESSAGE_CREATE")) == flood.sent
    assert recovered <= FAILOVER_TARGET, f"orphaned shards READY after {recovered:.1f}s ({took=})"
    assert sorted((await cluster.shares(http)).values()) == [6, 6]
    stats = await control.stats()
    assert stats["identifies"] == SHARDS, "the orphaned shards must RESUME, not IDENTIFY"
    assert stats["resumes"] - resumes_before >= 4
    await assert_one_session_per_shard(control)


async def test_rolling_restart_mid_flood_hands_every_shard_over_by_resume_losing_nothing(
    cluster: GatewayCluster, sim: Simulator, http: aiohttp.ClientSession, amqp_url: str, group: str
) -> None:
    control = Control(http, sim.base_url)
    await cluster.start_settled(http, "a", "b", "c")
    async with event_sink(amqp_url, group, ["MESSAGE_CREATE"]) as sink:
        async with Flood(control) as flood:
            for old, new in (("a", "a2"), ("b", "b2"), ("c", "c2")):
                await cluster.terminate(old)
                await cluster.add(new)
                await cluster.wait_settled(http, timeout=60)
            await asyncio.sleep(1.0)
        await wait_all_relayed(sink, flood)
        assert len(sink.ids("MESSAGE_CREATE")) == flood.sent
    assert sorted((await cluster.shares(http)).values()) == [4, 4, 4]
    stats = await control.stats()
    assert stats["identifies"] == SHARDS, "handovers must RESUME, never IDENTIFY"
    await assert_one_session_per_shard(control)


async def test_scaling_one_to_three_to_two_rebalances_by_resume(
    cluster: GatewayCluster, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    control = Control(http, sim.base_url)
    await cluster.add("a")
    await cluster.wait_settled(http, timeout=60)
    assert list((await cluster.shares(http)).values()) == [SHARDS]
    resumes = (await control.stats())["resumes"]
    await cluster.add("b")
    await cluster.add("c")
    await cluster.wait_settled(http, timeout=60)
    assert sorted((await cluster.shares(http)).values()) == [4, 4, 4]
    stats = await control.stats()
    # Two thirds of the shards moved, each exactly once (no flapping), each by RESUME.
    assert await cluster.metric(http, GIVEN) == 8
    assert await cluster.metric(http, TAKEN) == 8
    assert stats["resumes"] - resumes >= 8, stats
    assert stats["identifies"] == SHARDS
    await cluster.terminate("c")
    await cluster.wait_settled(http, timeout=60)
    assert sorted((await cluster.shares(http)).values()) == [6, 6]
    stats = await control.stats()
    assert stats["resumes"] - resumes >= 12, stats
    # b's 4 from before, and c's 4 handed to a and b (c's own counters left with it)
    assert await cluster.metric(http, TAKEN) == 4 + 4
    assert stats["identifies"] == SHARDS
    await assert_one_session_per_shard(control)


@pytest.mark.rmq4  # also against RabbitMQ 4 (make test-rmq4)
async def test_a_process_cut_off_from_rabbitmq_stops_relaying_before_its_shards_move(
    cluster: GatewayCluster, sim: Simulator, http: aiohttp.ClientSession, amqp_url: str, group: str
) -> None:
    """Its Discord sockets stay up, but its leases are gone: it must let go of every shard
    before another process may run one, so no shard ever has two live sessions."""
    control = Control(http, sim.base_url)
    await cluster.start_settled(http, "a", "b", "c")
    async with event_sink(amqp_url, group, ["MESSAGE_CREATE"]) as sink:
        async with Flood(control) as flood:
            await wait_until(lambda: flood.sent > 2000, timeout=30)
            prefix = f"spectacles-gateway:{_hostname()}:{cluster.pid('b')}"
            pids = await asyncio.to_thread(connections_named, prefix)
            # publisher, control, identify leases and the cluster's (leases and roster)
            assert len(pids) == 4, pids
            await asyncio.to_thread(close_connections, pids)
            await asyncio.sleep(2.0)
            await cluster.wait_settled(http, timeout=60)
            await asyncio.sleep(1.0)
        await wait_all_relayed(sink, flood)
        assert len(sink.ids("MESSAGE_CREATE")) == flood.sent
    stats = await control.stats()
    assert stats["shard_overlaps"] == 0, "a shard ran in two processes at once"
    assert stats["resumes"] >= 4, "its shards must have moved (or come back) by RESUME"
    assert stats["identifies"] == SHARDS
    await assert_one_session_per_shard(control)


def _hostname() -> str:
    import socket

    return socket.gethostname()
