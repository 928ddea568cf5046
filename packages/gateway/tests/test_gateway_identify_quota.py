"""The IDENTIFY quota: never spent to 0, shared by processes, refreshed, paced without rejects."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_testkit import (
    TOKEN,
    Control,
    cleanup_broker,
    gateway_config,
    running_gateway,
    running_simulator,
    wait_ready,
    wait_until,
)
from process_kit import gateway_process, process_env

from spectacles.gateway import (
    ConfigError,
    GatewayService,
    IdentifyLimitExceeded,
    ShardState,
    parse_config,
)

pytestmark = pytest.mark.rmq4  # also run against RabbitMQ 4 (make test-rmq4)


async def session_start_limit(http: aiohttp.ClientSession, api_url: str) -> dict[str, Any]:
    async with http.get(
        f"{api_url}/gateway/bot", headers={"Authorization": f"Bot {TOKEN}"}
    ) as response:
        assert response.status == 200
        limit: dict[str, Any] = (await response.json())["session_start_limit"]
        return limit


async def test_remaining_equal_to_shards_starts_nothing(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """The last IDENTIFY is never spent: remaining == shards is refused before any connect."""
    async with running_simulator(session_start_total=2) as sim:
        config = gateway_config(
            sim, amqp_url, group, shards={"count": 2}, gateway={"identify_reserve": 1}
        )
        service = GatewayService(config, connection_name=group)
        try:
            with pytest.raises(IdentifyLimitExceeded) as info:
                await service.start()
        finally:
            await service.stop()
        stats = await Control(http, sim.base_url).stats()
        limit = await session_start_limit(http, sim.api_url)
    assert stats["identify_attempts"] == 0
    assert limit["remaining"] == 2
    message = str(info.value)
    assert "remaining is 2" in message and "at most 1 may start" in message
    assert "resets the bot token" in message


async def test_two_processes_never_spend_more_than_remaining_minus_one(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """Each process alone fits the quota; together they do not, and they share the count."""
    async with running_simulator(session_start_total=4, shards=4) as sim:
        configs = [
            gateway_config(
                sim,
                amqp_url,
                group,
                shards={"count": 4, "ids": ids},
                gateway={"identify_reserve": 1},
            )
            for ids in ("0-1", "2-3")
        ]
        services = [
            GatewayService(c, connection_name=f"{group}:{i}") for i, c in enumerate(configs)
        ]
        try:
            await asyncio.gather(*(s.start() for s in services))
            shards = [shard for s in services for shard in s.shards.values()]
            await wait_until(
                lambda: (
                    sum(s.is_ready for s in shards) == 3
                    and sum(s.state is ShardState.STOPPED for s in shards) == 1
                ),
                timeout=30,
                what="3 shards ready and 1 refused",
            )
            stats = await Control(http, sim.base_url).stats()
            limit = await session_start_limit(http, sim.api_url)
            (refused,) = [s for s in shards if s.state is ShardState.STOPPED]
        finally:
            await asyncio.gather(*(s.stop() for s in services))
    assert isinstance(refused.fatal_error, IdentifyLimitExceeded)
    assert stats["identify_attempts"] == 3  # remaining (4) - 1
    assert limit["remaining"] == 1


async def test_quota_is_refreshed_once_its_window_passed(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """With 1 spendable IDENTIFY per window, a re-IDENTIFY after the reset still goes out."""
    async with running_simulator(session_start_total=2, session_start_reset_ms=1500) as sim:
        config = gateway_config(sim, amqp_url, group, gateway={"identify_reserve": 1})
        async with running_gateway(config, group) as service:
            await wait_ready(service)
            shard = service.shards[0]
            await wait_until(lambda: shard.pending_confirms == 0, timeout=10)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while (await session_start_limit(http, sim.api_url))["remaining"] != 2:
                assert loop.time() < deadline, "the simulator's quota window never reset"
                await asyncio.sleep(0.1)
            await Control(http, sim.base_url).post("/shards/0/invalidate?resumable=false")
            await wait_until(lambda: shard.identifies == 2 or not shard.is_alive, timeout=20)
            assert shard.is_alive, f"refused: {shard.fatal_error}"
            await wait_ready(service)
            stats = await Control(http, sim.base_url).stats()
    assert stats["identify_attempts"] == 2


SHARDS = int(os.environ.get("QUOTA_TEST_SHARDS", "960"))
MAX_CONCURRENCY = 16
INTERVAL = 0.5


@pytest.fixture
async def many_shard_queues(amqp_url: str, group: str) -> AsyncIterator[None]:
    """The command queues of every shard (the `group` fixture only knows the first four)."""
    yield
    await cleanup_broker(amqp_url, group, shards=SHARDS)


async def test_many_shards_identify_without_a_reject_and_keep_the_reserve(
    amqp_url: str,
    group: str,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    many_shard_queues: None,
) -> None:
    """960 shards in one process: no IDENTIFY arrives early, the reserve stays untouched."""
    reserve = 5
    async with running_simulator(
        shards=SHARDS,
        max_concurrency=MAX_CONCURRENCY,
        identify_interval=INTERVAL,
        session_start_total=SHARDS + reserve,
        heartbeat_interval_ms=45_000,
        guilds=2,
    ) as sim:
        control = Control(http, sim.base_url)
        env = process_env(
            sim.api_url,
            amqp_url,
            group,
            LOG_LEVEL="WARNING",
            # One process: the local lock paces it alone (the amqp lock's round trips per
            # IDENTIFY would add spacing of their own and hide early arrivals).
            GATEWAY_IDENTIFY_LOCK=os.environ.get("QUOTA_TEST_LOCK", "local"),
        )
        tables = {
            "gateway": {
                "identify_interval": INTERVAL,
                "identify_reserve": reserve,
                # 960 quorum queues (+ their .dead) would be a heavy load of Raft groups for the
                # test's single broker node; this test is about IDENTIFY pacing.
                "commands_queue_type": "classic",
            },
            "shards": {"count": SHARDS},
        }
        async with gateway_process(tmp_path, env, "many", tables) as gateway:
            await gateway.wait_ready(http, timeout=240)
            stats = await control.stats()
            limit = await session_start_limit(http, sim.api_url)
    assert stats["identify_rejected"] == 0, f"{stats['identify_rejected']} IDENTIFYs came early"
    assert stats["identifies"] == SHARDS
    assert limit["remaining"] == reserve


def test_new_keys_are_validated_and_named() -> None:
    base: dict[str, Any] = {"token": "t", "events": ["READY"]}
    config = parse_config(base)
    assert config.gateway.identify_reserve == 5 and config.gateway.fatal_block == 600.0
    assert config.gateway.clear_fatal_block is False
    assert parse_config(base, {"GATEWAY_CLEAR_FATAL_BLOCK": "1"}).gateway.clear_fatal_block
    assert not parse_config(base, {"GATEWAY_CLEAR_FATAL_BLOCK": "false"}).gateway.clear_fatal_block
    with pytest.raises(ConfigError, match=r"gateway\.identify_reserve.*>= 1"):
        parse_config({**base, "gateway": {"identify_reserve": 0}})
    with pytest.raises(ConfigError, match=r"gateway\.clear_fatal_block"):
        parse_config(base, {"GATEWAY_CLEAR_FATAL_BLOCK": "maybe"})
    with pytest.raises(ConfigError, match=r"gateway\.fatal_block"):
        parse_config({**base, "gateway": {"fatal_block": -1}})
