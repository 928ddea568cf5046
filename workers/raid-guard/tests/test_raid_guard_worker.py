"""Raid-guard end to end: joins published to a real RabbitMQ, reactions seen in the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from spectacles.broker import Broker, delay_queue_name, scheduled
from spectacles.broker.admin import BrokerAdmin
from spectacles.broker.dead_letters import DeadMessage, list_dead
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings
from spectacles.rest import RestClient
from spectacles.simulator import Simulator, SimulatorConfig
from spectacles.worker import WorkerSettings
from spectacles.workers.raid_guard.config import RaidAction, RaidConfig
from spectacles.workers.raid_guard.guard import RESTORE, build_worker

CONFIG = RaidConfig(
    join_threshold=10,
    window_seconds=10,
    cooldown_seconds=1.0,
    action=RaidAction.KICK,
    min_account_age_days=7,
)
# Every cooldown the tests use (the restore's holding queue waits a quarter of it), and the
# retry delay: the holding queues to delete afterwards.
FAILOVER_COOLDOWN = 5.0
BUCKETS = (*(c / 4 for c in (1.0, 1.5, 2.0, 3.0, FAILOVER_COOLDOWN)), CONFIG.restore_retry_seconds)


@dataclass
class Harness:
    sim: Simulator
    http: aiohttp.ClientSession
    publisher: Publisher
    settings: WorkerSettings
    guild_id: str

    async def control(self, method: str, path: str, **kw: Any) -> Any:
        async with self.http.request(method, self.sim.control_url + path, **kw) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def guild(self) -> dict[str, Any]:
        guild: dict[str, Any] = await self.control("GET", f"/guilds/{self.guild_id}")
        return guild

    async def new_members(self, count: int, age_days: float) -> list[str]:
        body = {"count": count, "account_age_days": age_days, "interval_ms": 0}
        result = await self.control("POST", f"/guilds/{self.guild_id}/members", json=body)
        return list(result["joined"])

    async def publish_joins(self, user_ids: list[str], spacing: timedelta) -> None:
        """GUILD_MEMBER_ADD for each member, with joined_at ``spacing`` apart (Discord's times)."""
        members = {m["id"]: m for m in (await self.guild())["members"]}
        start = datetime.now(UTC)
        for index, user_id in enumerate(user_ids):
            member = members[user_id]
            body = {
                "guild_id": self.guild_id,
                "user": {"id": user_id, "username": member["username"]},
                "roles": [],
                "joined_at": (start + index * spacing).isoformat(),
                "deaf": False,
                "mute": False,
            }
            await self.publisher.publish(
                "GUILD_MEMBER_ADD",
                json.dumps(body).encode(),
                headers={"shard_id": 0, "seq": index, "guild_id": self.guild_id},
                message_id=f"0:test:{user_id}",
                type="GUILD_MEMBER_ADD",
            )

    async def first_dead_letter(self) -> DeadMessage:
        """The first message raid-guard dead-lettered (waits up to 10 s for one)."""
        async with await Broker.connect(self.settings.broker) as broker:
            async with asyncio.timeout(10):
                while not (dead := await list_dead(broker, "raid-guard", limit=1)):
                    await asyncio.sleep(0.05)
            return dead[0]

    async def alerts(self, channel_id: str) -> list[dict[str, Any]]:
        messages = await self.control("GET", f"/channels/{channel_id}/messages")
        return [m for m in messages if "Raid detected" in m["content"]]


@contextlib.asynccontextmanager
async def open_harnesses(amqp_url: str, group: str, *, guilds: int) -> AsyncIterator[list[Harness]]:
    """One simulator and broker group; a ``Harness`` per simulated guild."""
    config = SimulatorConfig(guilds=guilds, members_per_guild=5, rate_limits_enabled=False)
    settings = WorkerSettings(
        discord_token=config.token,
        amqp_url=amqp_url,
        group=group,
        metrics_address="127.0.0.1:0",
    )
    async with Simulator(config) as sim, aiohttp.ClientSession() as http:
        publisher = await Publisher.connect(BrokerSettings(amqp_url=amqp_url, group=group))
        try:
            settings = replace(settings, discord_api_url=sim.api_url)
            async with http.get(sim.control_url + "/guilds") as response:
                listed = await response.json()
            assert len(listed) == guilds
            yield [Harness(sim, http, publisher, settings, g["id"]) for g in listed]
        finally:
            await publisher.close()
            async with await BrokerAdmin.connect(amqp_url) as admin:
                await admin.cleanup(
                    queues=(
                        f"{group}.raid-guard",
                        f"{group}.raid-guard.dead",
                        *(delay_queue_name(group, RESTORE, d) for d in BUCKETS),
                    ),
                    exchanges=(group, f"{group}.dlx"),
                )


@pytest.fixture
async def harness(amqp_url: str, unique_name: str) -> AsyncIterator[Harness]:
    async with open_harnesses(amqp_url, unique_name, guilds=1) as (only,):
        yield only


@pytest.fixture
async def two_guilds(amqp_url: str, unique_name: str) -> AsyncIterator[list[Harness]]:
    async with open_harnesses(amqp_url, unique_name, guilds=2) as both:
        yield both


def handled() -> float:
    labels = {"worker": "raid-guard", "event": "GUILD_MEMBER_ADD"}
    return REGISTRY.get_sample_value("spectacles_worker_events_handled_total", labels) or 0.0


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def test_a_burst_of_joins_raises_one_alert_locks_down_and_kicks_young_accounts(
    harness: Harness,
) -> None:
    guild = await harness.guild()
    assert guild["verification_level"] < 3
    level_before = guild["verification_level"]
    young = await harness.new_members(12, age_days=1)
    old = await harness.new_members(13, age_days=400)
    joiners = [uid for pair in zip(old, young, strict=False) for uid in pair] + old[len(young) :]
    assert len(joiners) == 25

    worker, guard = build_worker(CONFIG, harness.settings)
    async with worker.running():
        before = handled()
        # 25 joins in 5 s (Discord's join times 200 ms apart), delivered as fast as possible.
        await harness.publish_joins(joiners, timedelta(milliseconds=200))

        async def all_handled() -> bool:
            return handled() >= before + 25

        await until(all_handled)

        async def locked_down() -> bool:
            return (await harness.guild())["verification_level"] == 3

        await until(locked_down)
        members = {m["id"] for m in (await harness.guild())["members"]}
        assert not members & set(young), "every young joiner is kicked"
        assert set(old) <= members, "accounts older than 7 days stay"

        alerts = await harness.alerts(guild["mod_log_channel_id"])
        assert len(alerts) == 1, alerts
        text = alerts[0]["content"]
        assert "10 members joined within" in text
        assert "Action: kicked (" in text
        assert "Newest accounts:" in text

        async def restored() -> bool:
            return (await harness.guild())["verification_level"] == level_before

        await until(restored, timeout=10)  # cooldown 1 s after the last join
        assert guard.detector.raid(int(harness.guild_id)) is None
        assert len(await harness.alerts(guild["mod_log_channel_id"])) == 1


async def test_joins_spread_out_are_no_raid(harness: Harness) -> None:
    guild = await harness.guild()
    level_before = guild["verification_level"]
    spread = await harness.new_members(8, age_days=1)
    steady = await harness.new_members(30, age_days=1)
    worker, _guard = build_worker(CONFIG, harness.settings)
    async with worker.running():
        before = handled()
        await harness.publish_joins(spread, timedelta(seconds=60 / 8))  # 8 joins over 60 s
        await harness.publish_joins(steady, timedelta(seconds=1.5))  # never 10 within 10 s

        async def all_handled() -> bool:
            return handled() >= before + 38

        await until(all_handled)
    after = await harness.guild()
    assert after["verification_level"] == level_before
    assert set(spread + steady) <= {m["id"] for m in after["members"]}
    assert await harness.alerts(guild["mod_log_channel_id"]) == []
    assert await harness.alerts(guild["system_channel_id"]) == []


async def test_two_replicas_still_raise_exactly_one_alert(harness: Harness) -> None:
    guild = await harness.guild()
    joiners = await harness.new_members(25, age_days=400)
    config = replace(CONFIG, action=RaidAction.ALERT)
    (a, _), (b, _) = build_worker(config, harness.settings), build_worker(config, harness.settings)
    async with a.running(), b.running():
        before = handled()
        await harness.publish_joins(joiners, timedelta(milliseconds=100))

        async def all_handled() -> bool:
            return handled() >= before + 25

        await until(all_handled)

        async def alerted() -> bool:
            return len(await harness.alerts(guild["mod_log_channel_id"])) >= 1

        await until(alerted)
        await asyncio.sleep(0.3)  # a second alert, if any, would be posted by now
        assert len(await harness.alerts(guild["mod_log_channel_id"])) == 1


async def test_malformed_join_is_dead_lettered(harness: Harness, amqp_url: str) -> None:
    worker, _guard = build_worker(CONFIG, harness.settings)
    async with worker.running():
        await harness.publisher.publish("GUILD_MEMBER_ADD", b'{"guild_id": "x", "user": 5}')
        message = await harness.first_dead_letter()
    assert "malformed GUILD_MEMBER_ADD" in message.error


async def test_a_failing_rest_call_is_reported_and_the_worker_carries_on(
    harness: Harness,
) -> None:
    joiners = await harness.new_members(10, age_days=400)
    config = replace(CONFIG, modlog_channel_id=1)  # no such channel: Discord answers 404
    worker, _guard = build_worker(config, harness.settings)

    def failures() -> float:
        labels = {"operation": "create_message"}
        return REGISTRY.get_sample_value("spectacles_raid_guard_rest_failures_total", labels) or 0.0

    async with worker.running():
        before_failures, before = failures(), handled()
        await harness.publish_joins(joiners, timedelta(milliseconds=100))

        async def all_handled() -> bool:
            return handled() >= before + 10

        await until(all_handled)
        assert failures() == before_failures + 1
        assert (await harness.guild())["verification_level"] == 3  # the lockdown still happened
        assert worker.ready()[0]


# -- the durable end of a raid (restore order parked in RabbitMQ) --------------------------------


def restore_outcomes(change: str) -> float:
    labels = {"change": change}
    value = REGISTRY.get_sample_value("spectacles_raid_guard_verification_changes_total", labels)
    return value or 0.0


async def parked_orders(amqp_url: str, group: str, cooldown: float) -> int:
    """Restore orders waiting in their holding queue (looked at, left in place)."""
    async with await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=group)) as broker:
        return len(await scheduled(broker, group, RESTORE, delay=cooldown / 4))


async def test_the_restore_survives_the_replica_that_raised_the_level(
    harness: Harness, amqp_url: str
) -> None:
    guild = await harness.guild()
    level_before = guild["verification_level"]
    assert level_before < 3
    joiners = await harness.new_members(12, age_days=400)
    config = replace(CONFIG, action=RaidAction.ALERT, cooldown_seconds=3.0)
    gid = int(harness.guild_id)

    first, first_guard = build_worker(config, harness.settings)
    async with first.running():
        await harness.publish_joins(joiners, timedelta(milliseconds=100))

        async def locked_down_and_alerted() -> bool:
            alerts = await harness.alerts(guild["mod_log_channel_id"])
            return (await harness.guild())["verification_level"] == 3 and len(alerts) == 1

        await until(locked_down_and_alerted)
    # Stopped mid-cooldown: it never ended the raid, so nothing in-process can restore the level.
    assert first_guard.detector.raid(gid) is not None
    assert (await harness.guild())["verification_level"] == 3

    restored_before = restore_outcomes("restored")
    fresh, fresh_guard = build_worker(config, harness.settings)
    async with fresh.running():

        async def restored() -> bool:
            return (await harness.guild())["verification_level"] == level_before

        await until(restored)
        assert restore_outcomes("restored") == restored_before + 1
        assert fresh_guard.detector.raid(gid) is None
    assert len(await harness.alerts(guild["mod_log_channel_id"])) == 1
    assert await parked_orders(amqp_url, harness.settings.group, config.cooldown_seconds) == 0


async def test_the_restore_leaves_a_level_a_moderator_changed(harness: Harness) -> None:
    joiners = await harness.new_members(10, age_days=400)
    config = replace(CONFIG, action=RaidAction.ALERT, cooldown_seconds=1.5)
    worker, guard = build_worker(config, harness.settings)
    async with worker.running():
        left_before = restore_outcomes("left")
        await harness.publish_joins(joiners, timedelta(milliseconds=100))

        async def locked_down() -> bool:
            return (await harness.guild())["verification_level"] == 3

        await until(locked_down)
        # A moderator moves it on during the raid (VERY_HIGH): that choice wins over the restore.
        async with RestClient(harness.settings.discord_token, base_url=harness.sim.api_url) as rest:
            await rest.modify_guild(int(harness.guild_id), verification_level=4)

        async def restore_ran() -> bool:
            return restore_outcomes("left") >= left_before + 1

        await until(restore_ran)
        assert (await harness.guild())["verification_level"] == 4
        assert guard.detector.raid(int(harness.guild_id)) is None


async def test_the_restore_waits_while_joins_keep_coming(harness: Harness) -> None:
    guild = await harness.guild()
    level_before = guild["verification_level"]
    burst = await harness.new_members(10, age_days=400)
    trickle = await harness.new_members(8, age_days=400)
    config = replace(CONFIG, action=RaidAction.ALERT, cooldown_seconds=2.0)
    worker, guard = build_worker(config, harness.settings)
    async with worker.running():
        await harness.publish_joins(burst, timedelta(milliseconds=100))

        async def locked_down() -> bool:
            return (await harness.guild())["verification_level"] == 3

        await until(locked_down)
        # One join every 0.4 s for ~3 s: longer than the cooldown, never that long without a join.
        for user_id in trickle:
            await harness.publish_joins([user_id], timedelta(0))
            await asyncio.sleep(0.4)
        assert (await harness.guild())["verification_level"] == 3
        assert guard.detector.raid(int(harness.guild_id)) is not None

        async def restored() -> bool:
            return (await harness.guild())["verification_level"] == level_before

        await until(restored)
        assert len(await harness.alerts(guild["mod_log_channel_id"])) == 1


async def test_a_malformed_restore_order_is_dead_lettered(harness: Harness, amqp_url: str) -> None:
    worker, _guard = build_worker(CONFIG, harness.settings)
    async with worker.running():
        await harness.publisher.publish("raid-guard.restore", b'{"guild_id": 5}')
        message = await harness.first_dead_letter()
    assert "malformed raid-guard.restore" in message.error


async def test_a_restore_discord_refuses_for_good_is_dead_lettered_not_retried(
    harness: Harness,
) -> None:
    # A guild the bot is not in (404): parking the order again every retry period forever would
    # never help, so the order goes to the dead letters with the reason, once.
    worker, _guard = build_worker(CONFIG, harness.settings)
    async with worker.running():
        failures_before = restore_failures()
        order = {"guild_id": "1", "raid_id": "r", "previous_level": 1, "last_join": 0.0}
        await harness.publisher.publish("raid-guard.restore", json.dumps(order).encode())
        message = await harness.first_dead_letter()
    assert "restoring the verification level refused" in message.error
    assert "404" in message.error
    assert restore_failures() == failures_before + 1


def restore_failures() -> float:
    labels = {"operation": "restore"}
    return REGISTRY.get_sample_value("spectacles_raid_guard_rest_failures_total", labels) or 0.0


# -- failover during a raid: the parked restore order marks the raid in progress ------------------


def adopted() -> float:
    return REGISTRY.get_sample_value("spectacles_raid_guard_raids_adopted_total") or 0.0


def lookup_failures() -> float:
    labels = {"operation": "find_restore"}
    return REGISTRY.get_sample_value("spectacles_raid_guard_rest_failures_total", labels) or 0.0


async def test_a_raid_going_on_across_a_failover_alerts_once_and_still_kicks(
    harness: Harness, amqp_url: str
) -> None:
    guild = await harness.guild()
    level_before = guild["verification_level"]
    assert level_before < 3
    first_burst = await harness.new_members(12, age_days=1)
    second_burst = await harness.new_members(12, age_days=1)
    config = replace(CONFIG, cooldown_seconds=FAILOVER_COOLDOWN)  # RAID_ACTION=kick
    group = harness.settings.group

    async def members() -> set[str]:
        return {m["id"] for m in (await harness.guild())["members"]}

    first, _first_guard = build_worker(config, harness.settings)
    async with first.running():
        await harness.publish_joins(first_burst, timedelta(milliseconds=100))

        async def first_burst_handled() -> bool:
            alerts = await harness.alerts(guild["mod_log_channel_id"])
            return (
                (await harness.guild())["verification_level"] == 3
                and len(alerts) == 1
                and not (await members()) & set(first_burst)
            )

        await until(first_burst_handled)
    # The active replica is gone mid-raid; only its parked restore order remembers the raid.

    adopted_before, restored_before = adopted(), restore_outcomes("restored")
    second, second_guard = build_worker(config, harness.settings)
    async with second.running():
        before = handled()
        await harness.publish_joins(second_burst, timedelta(milliseconds=100))

        async def second_burst_handled() -> bool:
            return handled() >= before + len(second_burst)

        await until(second_burst_handled)
        assert adopted() == adopted_before + 1
        assert second_guard.detector.raid(int(harness.guild_id)) is not None

        async def second_burst_kicked() -> bool:
            return not (await members()) & set(second_burst)

        await until(second_burst_kicked)
        assert (await harness.guild())["verification_level"] == 3
        assert len(await harness.alerts(guild["mod_log_channel_id"])) == 1

        async def restored() -> bool:
            return (await harness.guild())["verification_level"] == level_before

        await until(restored, timeout=20)
        assert restore_outcomes("restored") == restored_before + 1
    assert len(await harness.alerts(guild["mod_log_channel_id"])) == 1
    assert await parked_orders(amqp_url, group, FAILOVER_COOLDOWN) == 0, "no second order"


async def test_a_raid_in_another_guild_after_a_failover_still_alerts(
    two_guilds: list[Harness], amqp_url: str
) -> None:
    raided_first, raided_after = two_guilds
    first_guild, other_guild = await raided_first.guild(), await raided_after.guild()
    config = replace(CONFIG, action=RaidAction.ALERT, cooldown_seconds=FAILOVER_COOLDOWN)
    first_burst = await raided_first.new_members(12, age_days=400)
    other_burst = await raided_after.new_members(12, age_days=400)

    first, _first_guard = build_worker(config, raided_first.settings)
    async with first.running():
        await raided_first.publish_joins(first_burst, timedelta(milliseconds=100))

        async def first_alerted() -> bool:
            return len(await raided_first.alerts(first_guild["mod_log_channel_id"])) == 1

        await until(first_alerted)

    adopted_before = adopted()
    second, _second_guard = build_worker(config, raided_first.settings)
    async with second.running():
        await raided_after.publish_joins(other_burst, timedelta(milliseconds=100))

        async def other_alerted() -> bool:
            return len(await raided_after.alerts(other_guild["mod_log_channel_id"])) == 1

        await until(other_alerted)
        # The first guild's order was seen by the lookup: it is not this raid's.
        assert adopted() == adopted_before
        assert (await raided_after.guild())["verification_level"] == 3

        async def both_restored() -> bool:
            return (await raided_first.guild())["verification_level"] == first_guild[
                "verification_level"
            ] and (await raided_after.guild())["verification_level"] == other_guild[
                "verification_level"
            ]

        await until(both_restored, timeout=20)
    assert len(await raided_first.alerts(first_guild["mod_log_channel_id"])) == 1
    assert len(await raided_after.alerts(other_guild["mod_log_channel_id"])) == 1


def park_failures() -> float:
    labels = {"operation": "park_restore"}
    return REGISTRY.get_sample_value("spectacles_raid_guard_rest_failures_total", labels) or 0.0


async def test_a_raid_alerts_but_leaves_the_level_when_rabbitmq_cannot_hold_the_restore(
    harness: Harness, amqp_url: str
) -> None:
    guild = await harness.guild()
    level_before = guild["verification_level"]
    joiners = await harness.new_members(10, age_days=400)
    config = replace(CONFIG, action=RaidAction.ALERT)
    bucket = delay_queue_name(harness.settings.group, RESTORE, config.cooldown_seconds / 4)
    worker, _guard = build_worker(config, harness.settings)
    async with worker.running(), await BrokerAdmin.connect(harness.settings.broker) as other:
        # Another connection holds the holding queue's name exclusively: RabbitMQ refuses both
        # the lookup and the restore order (405 RESOURCE_LOCKED).
        await other.declare_queue(bucket, durable=False, exclusive=True)
        lookups_before, parks_before = lookup_failures(), park_failures()
        await harness.publish_joins(joiners, timedelta(milliseconds=100))

        async def alerted() -> bool:
            return len(await harness.alerts(guild["mod_log_channel_id"])) == 1

        await until(alerted)
        assert lookup_failures() == lookups_before + 1
        assert park_failures() == parks_before + 1
        # Never a raised level without an order that restores it.
        assert (await harness.guild())["verification_level"] == level_before
