"""Fidelity: unmodified discord.py registers slash commands with `CommandTree.sync()` and answers
them (a direct response, and a deferral completed by a follow-up) through the simulator."""

from __future__ import annotations

import asyncio
import contextlib

import discord
import pytest
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

TOKEN = "test-token"


async def _state_when(http, url, predicate, timeout: float = 15.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with http.get(url) as response:
            state = await response.json()
        if predicate(state):
            return state
        assert loop.time() < deadline, state
        await asyncio.sleep(0.05)


@pytest.mark.timeout(90)
async def test_discord_py_syncs_and_answers_slash_commands(make_sim, http, monkeypatch):
    sim = await make_sim(guilds=1, members_per_guild=3, heartbeat_interval_ms=5000)
    monkeypatch.setattr(Route, "BASE", sim.api_url)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(sim.gateway_url))

    client = discord.Client(intents=discord.Intents.default())
    tree = app_commands.CommandTree(client)
    ready = asyncio.Event()

    @tree.command(name="ping", description="Is the bot alive?")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"Pong, {interaction.user.name}!")

    @tree.command(name="slow", description="Answers after thinking")
    @app_commands.describe(times="how many")
    async def slow(interaction: discord.Interaction, times: int) -> None:
        await interaction.response.defer(ephemeral=True)
        await interaction.followup.send(f"thought {times} times")

    @client.event
    async def on_ready() -> None:
        ready.set()

    runner = asyncio.create_task(client.start(TOKEN))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        synced = await tree.sync()
        assert sorted(c.name for c in synced) == ["ping", "slow"]
        assert {c.name for c in sim.commands.scope(None)} == {"ping", "slow"}

        guild = next(iter(sim.world.guilds.values()))
        user = next(m.user for m in guild.members.values() if not m.user.bot)
        base = f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}"
        async with http.post(
            base + "/interactions", json={"command": "ping", "user_id": str(user.id)}
        ) as response:
            assert response.status == 200, await response.text()
            created = await response.json()
        state = await _state_when(
            http,
            f"{sim.control_url}/interactions/{created['id']}",
            lambda s: s["status"] != "pending",
        )
        assert state["status"] == "responded" and state["response"]["type"] == 4
        assert state["original"]["content"] == f"Pong, {user.username}!"

        async with http.post(
            base + "/interactions", json={"command": "slow", "options": {"times": 3}}
        ) as response:
            created = await response.json()
        state = await _state_when(
            http,
            f"{sim.control_url}/interactions/{created['id']}",
            lambda s: s["status"] == "responded",
        )
        assert state["response"]["type"] == 5
        assert state["original"]["content"] == "thought 3 times"
        assert state["original"]["flags"] == 64  # deferred ephemerally
    finally:
        await client.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(runner, 10)
