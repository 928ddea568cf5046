"""Slash commands in the worker SDK: registration, routing, answers and the automatic defer.

A real RabbitMQ carries INTERACTION_CREATE (published as the gateway would); the simulator plays
Discord: it registers the commands, creates the interactions and judges every answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from spectacles.broker.admin import BrokerAdmin
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings
from spectacles.models import Interaction
from spectacles.simulator import Simulator, SimulatorConfig
from spectacles.worker import CommandContext, Worker, WorkerSettings

from .conftest import eventually


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimulatorConfig(guilds=1, members_per_guild=5, identify_interval=0.0)
    async with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def settings(
    amqp_url: str, unique_name: str, sim: Simulator, admin: BrokerAdmin
) -> AsyncIterator[WorkerSettings]:
    yield WorkerSettings(
        discord_token=sim.config.token,
        amqp_url=amqp_url,
        group=unique_name,
        discord_api_url=sim.api_url,
        metrics_address="127.0.0.1:0",
        command_defer_after=0.3,
    )
    await admin.cleanup(
        queues=(
            f"{unique_name}.cmd",
            f"{unique_name}.cmd.dead",
            f"{unique_name}.cmd-other",
            f"{unique_name}.cmd-other.dead",
        ),
        exchanges=(unique_name, f"{unique_name}.dlx", f"{unique_name}.commands"),
    )


@pytest.fixture
async def publisher(settings: WorkerSettings) -> AsyncIterator[Publisher]:
    pub = await Publisher.connect(BrokerSettings(amqp_url=settings.amqp_url, group=settings.group))
    await pub.declare_events_exchange()
    try:
        yield pub
    finally:
        await pub.close()


class Discord:
    """The simulator's control API as the tests use it."""

    def __init__(self, sim: Simulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http
        guild = next(iter(sim.world.guilds.values()))
        self.guild_id, self.channel_id = guild.id, guild.system_channel_id

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.sim.control_url + path, json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def use(self, command: str, **options: Any) -> dict[str, Any]:
        """A member uses ``/command``; returns the INTERACTION_CREATE payload Discord sends."""
        body: dict[str, Any] = {"command": command}
        if options:
            body["options"] = options
        created = await self.control(
            "POST", f"/guilds/{self.guild_id}/channels/{self.channel_id}/interactions", body
        )
        return dict(self.sim.interactions.by_id[int(created["id"])].payload)

    async def state(self, interaction_id: str) -> dict[str, Any]:
        return dict(await self.control("GET", f"/interactions/{interaction_id}"))

    async def commands(self) -> list[str]:
        return sorted(c["name"] for c in (await self.control("GET", "/commands"))["global"])

    async def command_posts(self) -> int:
        log = await self.control("GET", "/rest-log")
        return sum(1 for c in log if c["method"] == "POST" and c["path"].endswith("/commands"))


@pytest.fixture
def discord(sim: Simulator, http: aiohttp.ClientSession) -> Discord:
    return Discord(sim, http)


async def relay(publisher: Publisher, payload: dict[str, Any]) -> None:
    """Publish INTERACTION_CREATE as the gateway relays it."""
    await publisher.publish(
        "INTERACTION_CREATE",
        json.dumps(payload).encode(),
        headers={"shard_id": 0, "seq": 1, "guild_id": payload["guild_id"]},
        message_id=f"0:s:{payload['id']}",
        type="INTERACTION_CREATE",
    )


def command_worker(name: str = "cmd", delay: float = 0.0) -> tuple[Worker, list[Interaction]]:
    worker = Worker(name)
    seen: list[Interaction] = []

    @worker.command(
        "hello",
        description="Say hello",
        options=[{"type": 5, "name": "secret", "description": "Only you see it"}],
    )
    async def hello(interaction: Interaction, ctx: CommandContext) -> None:
        seen.append(interaction)
        await asyncio.sleep(delay)
        await ctx.respond("Hello!", ephemeral=interaction.option("secret", False) is True)

    return worker, seen


async def test_commands_are_upserted_once_and_other_commands_survive(
    settings: WorkerSettings, discord: Discord, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    # Another worker's command, registered before ours: a bulk overwrite would delete it.
    url = f"{sim.api_url}/applications/{sim.world.application_id}/commands"
    headers = {"Authorization": f"Bot {sim.config.token}"}
    async with http.post(url, json={"name": "other", "description": "x"}, headers=headers) as r:
        assert r.status in (200, 201)
    worker, _ = command_worker()
    async with worker.running(settings):
        assert await discord.commands() == ["hello", "other"]
    posts = await discord.command_posts()
    # A second replica (or a restart) finds the identical command and spends no request on it.
    replica, _ = command_worker()
    async with replica.running(settings):
        pass
    assert await discord.command_posts() == posts
    assert await discord.commands() == ["hello", "other"]


async def test_command_is_answered_and_other_commands_are_left_alone(
    settings: WorkerSettings,
    discord: Discord,
    publisher: Publisher,
    sim: Simulator,
    admin: BrokerAdmin,
) -> None:
    other = Worker("cmd-other")

    @other.command("other", description="Owned by another worker")
    async def never(interaction: Interaction, ctx: CommandContext) -> None:
        raise AssertionError("not this worker's command")

    async with other.running(settings):
        pass  # registers /other, so the simulator lets a member use it
    worker, seen = command_worker()
    async with worker.running(settings):
        foreign = await discord.use("other")
        await relay(publisher, foreign)
        mine = await discord.use("hello", secret=True)
        await relay(publisher, mine)

        async def answered() -> bool:
            return (await discord.state(mine["id"]))["status"] == "responded"

        await eventually(answered)
        state = await discord.state(mine["id"])
        assert state["response"]["type"] == 4
        assert state["response"]["data"]["content"] == "Hello!"
        assert state["response"]["data"]["flags"] & 64  # the ephemeral option was honoured
        assert [i.id for i in seen] == [int(mine["id"])]
        # The foreign command was acked and ignored: no answer, no dead letter.
        assert (await discord.state(foreign["id"]))["status"] == "pending"
        await eventually(lambda: worker._consumer is not None and worker._consumer.in_flight == 0)
        for queue in (f"{settings.group}.cmd", f"{settings.group}.cmd.dead"):
            assert await admin.depth(queue) == 0, queue


async def test_slow_handler_is_deferred_then_its_answer_edits_the_original(
    settings: WorkerSettings, discord: Discord, publisher: Publisher
) -> None:
    worker, _ = command_worker(delay=1.0)  # slower than command_defer_after (0.3 s)
    async with worker.running(settings):
        payload = await discord.use("hello")
        await relay(publisher, payload)

        async def edited() -> bool:
            state = await discord.state(payload["id"])
            return state["status"] == "responded"

        await eventually(edited)
    state = await discord.state(payload["id"])
    assert state["failed"] is False
    assert state["response"]["type"] == 5  # the automatic defer came first
    assert state["original"]["content"] == "Hello!"  # respond() became the edit


def test_command_names_are_checked_at_registration() -> None:
    worker = Worker("cmd")
    with pytest.raises(ValueError, match="lowercase"):
        worker.command("Ping", description="x")
    with pytest.raises(ValueError, match="description"):
        worker.command("ping", description="")

    @worker.command("ping", description="x")
    async def ping(interaction: Interaction, ctx: CommandContext) -> None: ...

    with pytest.raises(ValueError, match="already has a command"):
        worker.command("ping", description="x")(ping)
    with pytest.raises(ValueError, match="INTERACTION_CREATE"):
        worker.on("INTERACTION_CREATE")(ping)  # type: ignore[arg-type]
