"""A raid through the whole stack, with two raid-guard replicas as real processes.

simulator -> GatewayService -> RabbitMQ -> 2 x `spectacles-raid-guard` -> `spectacles-rest-proxy`
-> simulator. The replicas share a single-active-consumer queue, so one raid is one alert.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from stack_kit import (
    TOKEN,
    SimControl,
    base_env,
    eventually,
    free_port,
    gateway_config,
    proxied_total,
    running_gateway,
    sample,
    scrape,
    service_process,
    sim_config,
)

from spectacles.simulator import Simulator

COOLDOWN_SECONDS = 2.0


async def test_a_raid_with_two_replicas_gives_one_alert_and_a_lockdown_that_is_lifted(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with Simulator(sim_config(), host="127.0.0.1", port=0) as sim:
        control = SimControl(http, sim)
        proxy_port = free_port()
        proxy_env = base_env(
            amqp_url,
            group,
            REST_PROXY_ADDRESS=f"127.0.0.1:{proxy_port}",
            DISCORD_API_URL=sim.api_url,
        )
        guard_env = base_env(
            amqp_url,
            group,
            DISCORD_TOKEN=TOKEN,
            DISCORD_API_URL=f"http://127.0.0.1:{proxy_port}/api/v10",
            RAID_JOIN_THRESHOLD="10",
            RAID_WINDOW_SECONDS="10",
            RAID_COOLDOWN_SECONDS=str(COOLDOWN_SECONDS),
            RAID_ACTION="alert",
        )
        ports = [free_port(), free_port()]
        async with (
            service_process("spectacles-rest-proxy", proxy_env, tmp_path, port=proxy_port) as rest,
            service_process(
                "spectacles-raid-guard",
                {**guard_env, "METRICS_ADDRESS": f"127.0.0.1:{ports[0]}"},
                tmp_path,
                port=ports[0],
                name="raid-guard-a",
            ) as guard_a,
            service_process(
                "spectacles-raid-guard",
                {**guard_env, "METRICS_ADDRESS": f"127.0.0.1:{ports[1]}"},
                tmp_path,
                port=ports[1],
                name="raid-guard-b",
            ) as guard_b,
        ):
            await asyncio.gather(*(p.wait_ready(http) for p in (rest, guard_a, guard_b)))
            async with running_gateway(gateway_config(sim, amqp_url, group), f"stack:{group}"):
                guild = await control.guild()
                guild_id, modlog_id = guild["id"], guild["mod_log_channel_id"]
                level_before = guild["verification_level"]
                assert level_before < 3

                joined = await control.join(guild_id, 25, interval_ms=50, account_age_days=1)
                assert len(joined) == 25

                async def level() -> int:
                    return int((await control.guild(guild_id))["verification_level"])

                async def alerts() -> list[str]:
                    messages = await control.messages(modlog_id)
                    return [m["content"] for m in messages if "Raid detected" in m["content"]]

                await eventually(level, lambda lv: lv == 3, what="verification raised to HIGH")
                await eventually(alerts, lambda a: len(a) >= 1, what="a raid alert")
                # The restore order comes back through the same queue, after every join.
                await eventually(
                    level,
                    lambda lv: lv == level_before,
                    timeout=COOLDOWN_SECONDS + 15,
                    what="verification restored after the cooldown",
                )
                final_alerts = await alerts()
                rest_log = await control.rest_log()
                proxy_samples = await scrape(http, rest.url + "/metrics")
                joins_handled = [
                    sample(
                        await scrape(http, g.url + "/metrics"),
                        "spectacles_worker_events_handled_total",
                        worker="raid-guard",
                        event="GUILD_MEMBER_ADD",
                    )
                    for g in (guard_a, guard_b)
                ]

    assert len(final_alerts) == 1, final_alerts
    assert "members joined within" in final_alerts[0]
    # Single active consumer: one replica saw every join, the other stood by.
    assert sorted(joins_handled) == [0, 25], joins_handled
    patches = [c for c in rest_log if c["method"] == "PATCH"]
    assert [(c["path"], c["status"]) for c in patches] == [(f"/guilds/{guild_id}", 200)] * 2
    posts = [c for c in rest_log if c["method"] == "POST"]
    assert [(c["path"], c["status"]) for c in posts] == [(f"/channels/{modlog_id}/messages", 200)]
    # Every write the workers made went through the proxy (its own process, its own counters).
    assert proxied_total(proxy_samples, "PATCH") == len(patches)
    assert proxied_total(proxy_samples, "POST") == len(posts)
