"""`!ping` through the whole stack, every part in this process through its public API.

simulator -> GatewayService -> RabbitMQ -> ping Worker (build_worker) -> RestProxy -> simulator.
"""

from __future__ import annotations

import aiohttp
from stack_kit import (
    TOKEN,
    SimControl,
    eventually,
    gateway_config,
    handled_total,
    proxied_total,
    replies_to,
    running_gateway,
    scrape,
    sim_config,
)

from spectacles.rest.proxy import ProxySettings, RestProxy
from spectacles.simulator import Simulator
from spectacles.worker import WorkerSettings
from spectacles.workers.ping import PingConfig
from spectacles.workers.ping.__main__ import build_worker


async def test_ping_gets_exactly_one_pong_through_the_proxy_and_nothing_else_is_answered(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    async with (
        Simulator(sim_config(), host="127.0.0.1", port=0) as sim,
        RestProxy(ProxySettings(address="127.0.0.1:0", upstream=sim.api_url)) as proxy,
    ):
        control = SimControl(http, sim)
        settings = WorkerSettings(
            discord_token=TOKEN,
            amqp_url=amqp_url,
            group=group,
            discord_api_url=proxy.url + "/api/v10",  # every REST call goes through the proxy
            metrics_address="127.0.0.1:0",
        )
        worker = build_worker(PingConfig(), settings)
        # The worker first: its queue must be bound before the gateway relays anything.
        async with (
            worker.running(),
            running_gateway(gateway_config(sim, amqp_url, group), f"stack:{group}"),
        ):
            guild = await control.guild()
            guild_id, channel_id = guild["id"], guild["system_channel_id"]
            bot_id = await control.bot_id()
            # One registry per process: count from here on (other tests' workers may have run).
            metrics_url = f"http://127.0.0.1:{worker.health_port}/metrics"
            before = await scrape(http, metrics_url)
            handled_before = handled_total(before, "ping")
            posts_before = proxied_total(before, "POST")
            log_before = len(await control.rest_log())

            async def handled() -> float:
                return handled_total(await scrape(http, metrics_url), "ping")

            chatter = await control.say(guild_id, channel_id, "hello there")
            from_bot = await control.say(guild_id, channel_id, "!ping", author_id=bot_id)
            await eventually(
                handled, lambda n: n >= handled_before + 2, what="both messages handled"
            )
            ping = await control.say(guild_id, channel_id, "!ping")
            await eventually(
                lambda: control.messages(channel_id),
                lambda ms: bool(replies_to(ms, ping["id"], bot_id)),
                what="a reply to !ping",
            )
            # The ping, and the bot's own reply coming back through the gateway (ignored).
            await eventually(handled, lambda n: n >= handled_before + 4, what="the reply handled")

            messages = await control.messages(channel_id)
            rest_log = (await control.rest_log())[log_before:]
            after = await scrape(http, metrics_url)

    (reply,) = replies_to(messages, ping["id"], bot_id)
    assert reply["content"].startswith("Pong! ") and reply["content"].endswith(" ms")
    assert reply["channel_id"] == channel_id
    assert replies_to(messages, chatter["id"], bot_id) == []
    assert replies_to(messages, from_bot["id"], bot_id) == []
    pongs = [m for m in messages if m["author"]["id"] == bot_id and "Pong" in m["content"]]
    assert pongs == [reply]
    # The reply was the one message the bot posted, and it went through the proxy.
    posts = [c for c in rest_log if c["method"] == "POST"]
    assert [(c["path"], c["status"]) for c in posts] == [(f"/channels/{channel_id}/messages", 200)]
    assert proxied_total(after, "POST") - posts_before == 1
