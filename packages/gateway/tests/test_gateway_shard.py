"""Shard behaviour against the simulator: wire format, close codes, reconnects, identify pacing."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from gateway_testkit import (
    Control,
    event_sink,
    gateway_config,
    running_gateway,
    running_simulator,
    wait_ready,
    wait_until,
)

from spectacles.gateway import GatewayService, IdentifyLimitExceeded, ShardState
from spectacles.models import RESUMABLE_CLOSE_CODE, close_policy


@pytest.mark.parametrize("compress", ["zlib-stream", "zstd-stream", "none"])
async def test_relay_publishes_dispatches_in_wire_format(
    amqp_url: str, group: str, http: aiohttp.ClientSession, compress: str
) -> None:
    async with (
        running_simulator() as sim,
        event_sink(amqp_url, group, ["GUILD_CREATE", "MESSAGE_CREATE"]) as sink,
    ):
        config = gateway_config(sim, amqp_url, group, gateway={"compress": compress})
        async with running_gateway(config, group) as service:
            await wait_ready(service)
            control = Control(http, sim.base_url)
            guilds = await control.get("/guilds")
            guild = guilds[0]
            guild_id = str(guild["id"])
            channel_id = (
                str(guild["channels"][0]["id"])
                if isinstance(guild["channels"][0], dict)
                else str(guild["channels"][0])
            )
            await control.post(
                f"/guilds/{guild_id}/channels/{channel_id}/messages", {"content": "hello relay"}
            )
            await wait_until(lambda: sink.of("MESSAGE_CREATE"), what="MESSAGE_CREATE")
            await wait_until(lambda: len(sink.of("GUILD_CREATE")) == 2, what="GUILD_CREATEs")
            session_id = service.shards[0].session.session_id  # type: ignore[union-attr]

    message = sink.of("MESSAGE_CREATE")[0]
    body = json.loads(message.body)
    assert body["content"] == "hello relay"
    assert "op" not in body and "t" not in body  # the `d` only, not the envelope
    assert message.type == "MESSAGE_CREATE"
    assert message.content_type == "application/json"
    assert message.delivery_mode == 2  # persistent
    assert message.timestamp is not None
    headers = message.headers
    assert headers["shard_id"] == 0
    assert headers["guild_id"] == guild_id
    assert message.message_id == f"0:{session_id}:{headers['seq']}"
    created = {m.headers["guild_id"] for m in sink.of("GUILD_CREATE")}
    assert created == {str(g["id"]) for g in guilds}  # the guild's own id for GUILD_*


RESUMABLE = [4000, 4001, 4002, 4003, 4005, 4008]
NEW_SESSION = [1000, 1001, 4007, 4009]
FATAL = [4004, 4010, 4011, 4012, 4013, 4014]


@pytest.mark.parametrize("code", RESUMABLE + NEW_SESSION)
async def test_shard_when_server_closes_follows_the_close_table(
    amqp_url: str, group: str, http: aiohttp.ClientSession, code: int
) -> None:
    async with (
        running_simulator() as sim,
        running_gateway(gateway_config(sim, amqp_url, group), group) as service,
    ):
        await wait_ready(service)
        control = Control(http, sim.base_url)
        before = await control.stats()
        shard = service.shards[0]
        await control.post(f"/shards/0/close?code={code}")
        await wait_until(lambda: shard.reconnects.total() >= 1, what="reconnect")
        await wait_ready(service)
        after = await control.stats()
    if close_policy(code).resume:
        assert after["resumes"] == before["resumes"] + 1, code
        assert after["identifies"] == before["identifies"], code
    else:
        assert after["identifies"] == before["identifies"] + 1, code
    assert shard.fatal is None


@pytest.mark.parametrize("code", FATAL)
async def test_shard_when_fatal_close_stops_and_process_exits_nonzero(
    amqp_url: str, group: str, http: aiohttp.ClientSession, code: int
) -> None:
    async with (
        running_simulator() as sim,
        running_gateway(gateway_config(sim, amqp_url, group), group) as service,
    ):
        await wait_ready(service)
        control = Control(http, sim.base_url)
        await control.post(f"/shards/0/close?code={code}")
        exit_code = await asyncio.wait_for(service.wait(), 10)
        stats = await control.stats()
        shard = service.shards[0]
        assert shard.state is ShardState.STOPPED
    assert exit_code == 1
    assert shard.fatal is not None and shard.fatal.code == code
    assert shard.fatal.fix  # the log line carries cause and fix (checked in the process test)
    assert stats["identifies"] == 1 and stats["resumes"] == 0  # no reconnect attempt


@pytest.mark.parametrize(
    ("action", "resumes"),
    [
        ("/shards/0/reconnect", True),
        ("/shards/0/invalidate?resumable=true", True),
        ("/shards/0/invalidate?resumable=false", False),
        ("/shards/0/drop", True),
        ("/shards/0/stall", True),  # no heartbeat ACK: zombie, reconnect, RESUME
    ],
)
async def test_shard_when_server_asks_reconnects(
    amqp_url: str, group: str, http: aiohttp.ClientSession, action: str, resumes: bool
) -> None:
    async with (
        running_simulator() as sim,
        running_gateway(gateway_config(sim, amqp_url, group), group) as service,
    ):
        await wait_ready(service)
        control = Control(http, sim.base_url)
        before = await control.stats()
        shard = service.shards[0]
        session_before = shard.session
        await control.post(action)
        await wait_until(lambda: shard.reconnects.total() >= 1, timeout=10, what=action)
        await wait_ready(service)
        after = await control.stats()
        session_after = shard.session
    assert session_before is not None and session_after is not None
    if resumes:
        assert after["resumes"] == before["resumes"] + 1
        assert session_after.session_id == session_before.session_id
    else:
        assert after["identifies"] == before["identifies"] + 1
        assert session_after.session_id != session_before.session_id


async def test_identify_queue_paces_buckets_across_four_shards(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    interval = 0.5
    async with running_simulator(shards=4, max_concurrency=2, identify_interval=interval) as sim:
        config = gateway_config(
            sim, amqp_url, group, gateway={"identify_interval": interval}, shards={"count": 4}
        )
        async with running_gateway(config, group) as service:
            await wait_ready(service, timeout=15)
            stats = await Control(http, sim.base_url).stats()
            sent = {i: s.last_identify_at for i, s in service.shards.items()}
    # The simulator answers a too-early IDENTIFY of a bucket with INVALID_SESSION.
    assert stats["identifies"] == 4
    assert stats["invalid_sessions"] == 0
    times = {i: t for i, t in sent.items() if t is not None}
    assert set(times) == {0, 1, 2, 3}
    # Bucket = shard_id % max_concurrency; within one, whichever shard connected first goes first.
    assert abs(times[2] - times[0]) >= interval  # bucket 0: shards 0 and 2, one interval apart
    assert abs(times[3] - times[1]) >= interval  # bucket 1: shards 1 and 3
    first_of_bucket = min(times[0], times[2]), min(times[1], times[3])
    assert abs(first_of_bucket[0] - first_of_bucket[1]) < interval  # buckets go together


async def test_close_uses_a_resumable_code(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    async with running_simulator() as sim:
        config = gateway_config(sim, amqp_url, group)
        async with running_gateway(config, group) as service:
            await wait_ready(service)
        stats = await Control(http, sim.base_url).stats()
        sessions = await Control(http, sim.base_url).get("/sessions")
    assert stats["closes"] == {str(RESUMABLE_CLOSE_CODE): 1}  # never 1000/1001
    assert len(sessions) == 1  # still resumable on the server


async def test_shard_count_absent_uses_the_recommended_count(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    async with running_simulator(shards=2, max_concurrency=2) as sim:
        async with running_gateway(gateway_config(sim, amqp_url, group), group) as service:
            await wait_ready(service)
            shards = {i: s.shard_count for i, s in service.shards.items()}
        sessions = await Control(http, sim.base_url).get("/sessions")
    assert shards == {0: 2, 1: 2}
    assert sorted(s["shard"] for s in sessions) == [[0, 2], [1, 2]]


async def test_start_refuses_more_shards_than_identifies_remaining(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    async with running_simulator(session_start_total=1) as sim:
        config = gateway_config(sim, amqp_url, group, shards={"count": 2})
        service = GatewayService(config, connection_name=group)
        try:
            with pytest.raises(IdentifyLimitExceeded) as info:
                await service.start()
        finally:
            await service.stop()
        stats = await Control(http, sim.base_url).stats()
    assert info.value.wanted == 2 and info.value.remaining == 1
    assert "session_start_limit" in str(info.value)
    assert stats["identifies"] == 0  # refused before any IDENTIFY
