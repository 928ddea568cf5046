"""The whole stack survives its parts going away: the gateway restarted, a worker crashing.

Real processes: `spectacles-gateway` (environment + a small TOML), `spectacles-ping`; the
simulator and the REST proxy run in this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from stack_kit import (
    EVENTS,
    INTENTS,
    TOKEN,
    ServiceProcess,
    SimControl,
    base_env,
    eventually,
    free_port,
    gateway_config,
    handled_total,
    replies_to,
    running_gateway,
    scrape,
    service_process,
    sim_config,
    write_gateway_toml,
)

from spectacles.rest.proxy import ProxySettings, RestProxy
from spectacles.simulator import DEFAULT_ROUTE_LIMITS, RouteLimit, Simulator

# Discord's 5 messages / 5 s per channel would make 20 replies take 20 s; this test is about
# crashes, not rate limits (test_stack_ping keeps the real ones).
FAST_MESSAGES = {
    **DEFAULT_ROUTE_LIMITS,
    "POST /channels/{channel_id}/messages": RouteLimit(50, 1.0),
}


@asynccontextmanager
async def ping_process(
    amqp_url: str, group: str, proxy: RestProxy, logs: Path, name: str
) -> AsyncIterator[ServiceProcess]:
    port = free_port()
    env = base_env(
        amqp_url,
        group,
        DISCORD_TOKEN=TOKEN,
        DISCORD_API_URL=proxy.url + "/api/v10",
        METRICS_ADDRESS=f"127.0.0.1:{port}",
    )
    async with service_process("spectacles-ping", env, logs, port=port, name=name) as process:
        yield process


@asynccontextmanager
async def gateway_process(
    sim: Simulator, amqp_url: str, group: str, logs: Path, name: str
) -> AsyncIterator[ServiceProcess]:
    port = free_port()
    config = write_gateway_toml(logs / f"{name}.toml", port)
    env = base_env(
        amqp_url,
        group,
        DISCORD_TOKEN=TOKEN,
        DISCORD_EVENTS=",".join(EVENTS),
        DISCORD_INTENTS=",".join(INTENTS),
        DISCORD_API_URL=sim.api_url,
    )
    async with service_process(
        "spectacles-gateway", env, logs, port=port, name=name, args=("--config", str(config))
    ) as process:
        yield process


async def test_a_restarted_gateway_resumes_and_the_ping_sent_while_it_was_down_is_answered(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with (
        Simulator(sim_config(), host="127.0.0.1", port=0) as sim,
        RestProxy(ProxySettings(address="127.0.0.1:0", upstream=sim.api_url)) as proxy,
        ping_process(amqp_url, group, proxy, tmp_path, "ping") as ping_worker,
    ):
        control = SimControl(http, sim)
        await ping_worker.wait_ready(http)
        guild = await control.guild()
        guild_id, channel_id = guild["id"], guild["system_channel_id"]
        bot_id = await control.bot_id()

        async def answered(message_id: str) -> list[dict[str, object]]:
            return await eventually(
                lambda: control.messages(channel_id),
                lambda ms: bool(replies_to(ms, message_id, bot_id)),
                timeout=20,
                what=f"a reply to {message_id}",
            )

        async with gateway_process(sim, amqp_url, group, tmp_path, "gateway-1") as first:
            await first.wait_ready(http)
            first_ping = await control.say(guild_id, channel_id, "!ping")
            await answered(first_ping["id"])
            assert await first.terminate() == 0
        stopped = await control.stats()

        # Said while no gateway runs: only a RESUME (the simulator's replay) can deliver it.
        second_ping = await control.say(guild_id, channel_id, "!ping")
        async with gateway_process(sim, amqp_url, group, tmp_path, "gateway-2") as second:
            await second.wait_ready(http)
            await answered(second_ping["id"])
            # Both pings and both replies (echoed back by the gateway) went through the worker.
            await eventually(
                lambda: scrape(http, ping_worker.url + "/metrics"),
                lambda s: handled_total(s, "ping") >= 4,
                what="every MESSAGE_CREATE handled",
            )
            resumed = await control.stats()
            assert await second.terminate() == 0
        messages = await control.messages(channel_id)

    assert stopped["identifies"] == 1
    assert stopped["closes"].get("4900") == 1, stopped["closes"]  # SIGTERM keeps the session
    assert resumed["identifies"] == 1, "the restarted gateway must RESUME, not IDENTIFY"
    assert resumed["resumes"] >= 1
    for ping in (first_ping, second_ping):
        assert len(replies_to(messages, ping["id"], bot_id)) == 1, messages


async def test_pings_in_flight_when_the_worker_is_killed_are_answered_by_its_replacement(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """At least once: every ping is answered; a second answer is possible, never a missing one.

    A duplicate needs the crash to fall between the reply's REST call and the ack: RabbitMQ
    then hands the unacked ping to the replacement, which answers it again. Nothing else
    duplicates (the gateway does not replay here), so more than two answers is a bug.
    """
    count = 20
    async with (
        Simulator(sim_config(route_limits=FAST_MESSAGES), host="127.0.0.1", port=0) as sim,
        RestProxy(ProxySettings(address="127.0.0.1:0", upstream=sim.api_url)) as proxy,
    ):
        control = SimControl(http, sim)
        guild = await control.guild()
        guild_id, channel_id = guild["id"], guild["system_channel_id"]
        bot_id = await control.bot_id()
        pings: list[str] = []

        async def answered_ids() -> set[str]:
            messages = await control.messages(channel_id)
            return {
                m["message_reference"]["message_id"]
                for m in messages
                if m["author"]["id"] == bot_id and m.get("message_reference")
            }

        async def say_pings() -> None:
            for _ in range(count):
                pings.append((await control.say(guild_id, channel_id, "!ping"))["id"])
                await asyncio.sleep(0.1)  # a steady stream, so the kill lands mid-flow

        async with ping_process(amqp_url, group, proxy, tmp_path, "ping-1") as doomed:
            await doomed.wait_ready(http)
            async with running_gateway(gateway_config(sim, amqp_url, group), f"stack:{group}"):
                talking = asyncio.create_task(say_pings())
                try:
                    await eventually(answered_ids, lambda a: len(a) >= 3, what="first answers")
                    await doomed.kill()
                    async with ping_process(
                        amqp_url, group, proxy, tmp_path, "ping-2"
                    ) as replacement:
                        await replacement.wait_ready(http)
                        await asyncio.wait_for(talking, 30)
                        await eventually(
                            answered_ids,
                            lambda a: set(pings) <= a,
                            timeout=20,
                            what=f"answers to all {count} pings",
                        )
                        handled_by_replacement = handled_total(
                            await scrape(http, replacement.url + "/metrics"), "ping"
                        )
                finally:
                    talking.cancel()
        messages = await control.messages(channel_id)

    assert len(pings) == count
    assert handled_by_replacement > 0, "the replacement took over the stream"
    for ping_id in pings:
        answers = replies_to(messages, ping_id, bot_id)
        assert 1 <= len(answers) <= 2, (ping_id, answers)
