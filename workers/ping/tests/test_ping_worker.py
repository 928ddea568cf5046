"""The ping worker end to end: events published to a real RabbitMQ, replies in the simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from spectacles.broker.admin import BrokerAdmin
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings
from spectacles.simulator import Simulator, SimulatorConfig
from spectacles.worker import WorkerSettings
from spectacles.workers.ping import PingConfig
from spectacles.workers.ping.__main__ import build_worker


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorConfig(guilds=1, members_per_guild=5)) as simulator:
        yield simulator


@pytest.fixture
async def settings(
    amqp_url: str, unique_name: str, sim: Simulator
) -> AsyncIterator[WorkerSettings]:
    yield WorkerSettings(
        discord_token=sim.config.token,
        amqp_url=amqp_url,
        group=unique_name,
        discord_api_url=sim.api_url,
        metrics_address="127.0.0.1:0",
    )
    async with await BrokerAdmin.connect(amqp_url) as admin:
        await admin.cleanup(
            queues=(f"{unique_name}.ping", f"{unique_name}.ping.dead"),
            exchanges=(unique_name, f"{unique_name}.dlx"),
        )


def handled() -> float:
    labels = {"worker": "ping", "event": "MESSAGE_CREATE"}
    return REGISTRY.get_sample_value("spectacles_worker_events_handled_total", labels) or 0.0


async def control(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, **kw: Any
) -> Any:
    async with http.request(method, sim.control_url + path, **kw) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def test_ping_gets_a_pong_reply_and_nothing_else_does(
    sim: Simulator, settings: WorkerSettings
) -> None:
    worker = build_worker(PingConfig(), settings)
    publisher = await Publisher.connect(
        BrokerSettings(amqp_url=settings.amqp_url, group=settings.group)
    )
    async with aiohttp.ClientSession() as http, worker.running():
        (guild,) = await control(http, sim, "GET", "/guilds")
        guild_id, channel_id = guild["id"], guild["channels"][0]["id"]
        async with http.get(
            sim.api_url + "/users/@me", headers={"Authorization": f"Bot {sim.config.token}"}
        ) as response:
            bot_id = (await response.json())["id"]

        async def say(content: str, author_id: str | None = None) -> dict[str, Any]:
            body: dict[str, Any] = {"content": content}
            if author_id:
                body["author_id"] = author_id
            event: dict[str, Any] = await control(
                http, sim, "POST", f"/guilds/{guild_id}/channels/{channel_id}/messages", json=body
            )
            await publisher.publish(
                "MESSAGE_CREATE",
                json.dumps(event).encode(),
                headers={"shard_id": 0, "seq": len(event), "guild_id": guild_id},
                message_id=f"0:test:{event['id']}",
                type="MESSAGE_CREATE",
            )
            return event

        before = handled()
        ping = await say("!ping")
        await say("hello there")
        await say("!ping", author_id=bot_id)  # a bot (here: ourselves) is ignored
        await say("!pingpong")
        async with asyncio.timeout(15):
            while handled() < before + 4:
                await asyncio.sleep(0.05)
        await publisher.close()

        messages = await control(http, sim, "GET", f"/channels/{channel_id}/messages")
    replies = [
        m for m in messages if m["author"]["id"] == bot_id and m["content"].startswith("Pong!")
    ]
    assert len(replies) == 1, messages
    (reply,) = replies
    assert reply["content"].endswith(" ms")
    assert int(reply["content"].split()[1]) >= 0
    assert reply["message_reference"]["message_id"] == ping["id"]
    assert reply["channel_id"] == channel_id


@pytest.mark.parametrize("ephemeral", [False, True])
async def test_slash_ping_is_answered_with_pong_and_latency(
    sim: Simulator, settings: WorkerSettings, ephemeral: bool
) -> None:
    worker = build_worker(PingConfig(), settings)
    publisher = await Publisher.connect(
        BrokerSettings(amqp_url=settings.amqp_url, group=settings.group)
    )
    async with aiohttp.ClientSession() as http, worker.running():
        commands = await control(http, sim, "GET", "/commands")
        (ping,) = commands["global"]  # registered at start, with its option
        assert ping["name"] == "ping"
        assert [o["name"] for o in ping["options"]] == ["ephemeral"]
        (guild,) = await control(http, sim, "GET", "/guilds")
        created = await control(
            http,
            sim,
            "POST",
            f"/guilds/{guild['id']}/channels/{guild['channels'][0]['id']}/interactions",
            json={"command": "ping", "options": {"ephemeral": ephemeral}},
        )
        payload = sim.interactions.by_id[int(created["id"])].payload
        await publisher.publish(
            "INTERACTION_CREATE",
            json.dumps(payload).encode(),
            headers={"shard_id": 0, "seq": 1, "guild_id": guild["id"]},
            message_id=f"0:test:{created['id']}",
            type="INTERACTION_CREATE",
        )
        await publisher.close()
        async with asyncio.timeout(15):
            while True:
                state = await control(http, sim, "GET", f"/interactions/{created['id']}")
                if state["status"] != "pending":
                    break
                await asyncio.sleep(0.05)
    assert state["status"] == "responded", state
    data = state["response"]["data"]
    assert data["content"].startswith("Pong! ") and data["content"].endswith(" ms")
    assert int(data["content"].split()[1]) >= 0
    assert bool(data.get("flags", 0) & 64) is ephemeral
