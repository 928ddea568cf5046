"""One interaction through the gateway, one through the ingress: workers get the same message."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from spectacles.broker.admin import BrokerAdmin, Received
from spectacles.gateway import GatewayService, parse_config
from spectacles.simulator import Simulator, SimulatorConfig

MESSAGE_ID = re.compile(r"^\d+:[^:]+:\d+$")


def shape(message: Received) -> dict[str, Any]:
    """Everything a worker could tell a message's origin by, except the values of ids."""
    # x-spectacles-publish-tag is the gateway publisher's own (docs/wire-format.md, "Internal
    # headers"): it matches returns of mandatory publishes, and consumers ignore it.
    headers = {k: v for k, v in (message.headers or {}).items() if k != "x-spectacles-publish-tag"}
    return {
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "type": message.type,
        "content_type": message.content_type,
        "persistent": message.persistent,
        "has_timestamp": message.timestamp is not None,
        "message_id_shape": bool(MESSAGE_ID.match(message.message_id or "")),
        "headers": {k: type(v).__name__ for k, v in headers.items()},
        "shard_id": headers.get("shard_id"),
        "guild_id": headers.get("guild_id"),
        "body_keys": sorted(json.loads(message.body)),
    }


async def test_ingress_publishes_what_the_gateway_publishes(
    amqp_url: str, group: str, observer: str, admin: BrokerAdmin, make_ingress: Any
) -> None:
    config = SimulatorConfig(guilds=1, members_per_guild=5, identify_interval=0.0)
    async with Simulator(config) as sim, aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bot {sim.config.token}"}
        commands = f"{sim.api_url}/applications/{sim.world.application_id}/commands"
        async with http.post(commands, json={"name": "hello", "description": "x"}, headers=auth):
            pass
        guild = next(iter(sim.world.guilds.values()))
        invoke = (
            f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}/interactions"
        )

        gateway = GatewayService(
            parse_config(
                {
                    "token": sim.config.token,
                    "events": ["INTERACTION_CREATE"],
                    "intents": ["GUILDS"],
                    "broker": {"group": group},
                    "amqp": {"url": amqp_url},
                    "gateway": {"api_url": sim.api_url, "identify_interval": 0.0},
                    "metrics": {"address": "127.0.0.1:0"},
                    "session_store": {"type": "none"},
                },
                {},
            ),
            connection_name=f"{group}-gateway",
        )
        await gateway.start()
        try:
            for shard in gateway.shards.values():
                await shard.wait_ready(20)
            async with http.post(invoke, json={"command": "hello"}) as response:
                assert response.status == 200
            # The dispatch reaches the gateway and RabbitMQ after the control API answered: wait.
            (from_gateway,) = await admin.take(observer, timeout=30)
        finally:
            await gateway.stop()

        ingress = await make_ingress(public_key=sim.signing_key.public_hex, response_timeout=0.3)
        async with http.patch(
            f"{sim.api_url}/applications/@me",
            json={"interactions_endpoint_url": ingress.url},
            headers=auth,
        ) as response:
            assert response.status == 200, await response.text()
        async with http.post(invoke, json={"command": "hello"}) as response:
            assert response.status == 200
        # The simulator POSTs to the ingress in the background: wait for it.
        (from_ingress,) = await admin.take(observer, timeout=30)

    assert shape(from_ingress) == shape(from_gateway)
    assert from_ingress.message_id.endswith(":" + json.loads(from_ingress.body)["id"])
