"""Fidelity: the unmodified third-party library discord.py runs against the simulator.

discord.py is pointed at the simulator only through its own seams: `Route.BASE` (REST base URL)
and `DiscordWebSocket.DEFAULT_GATEWAY` (the URL it connects to before READY gives it a
`resume_gateway_url`).
"""

from __future__ import annotations

import asyncio
import contextlib

import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

TOKEN = "test-token"


async def _wait_for(predicate, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_discord_py_connects_replies_and_resumes_after_reconnect(make_sim, http, monkeypatch):
    sim = await make_sim(guilds=2, members_per_guild=5, heartbeat_interval_ms=5000)
    monkeypatch.setattr(Route, "BASE", sim.api_url)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(sim.gateway_url))

    intents = discord.Intents.default()
    intents.members = True
    intents.message_content = True
    client = discord.Client(intents=intents)
    ready, resumed = asyncio.Event(), asyncio.Event()

    @client.event
    async def on_ready() -> None:
        ready.set()

    @client.event
    async def on_resumed() -> None:
        resumed.set()

    @client.event
    async def on_message(message: discord.Message) -> None:
        if message.content == "!ping":
            await message.reply("Pong!")

    runner = asyncio.create_task(client.start(TOKEN))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        assert client.user is not None and client.user.id == sim.world.bot.id
        assert {g.id for g in client.guilds} == set(sim.world.guilds)
        guild = next(iter(sim.world.guilds.values()))
        assert client.get_guild(guild.id).get_channel(guild.system_channel_id) is not None
        # Members were chunked through op 8 -> GUILD_MEMBERS_CHUNK.
        assert len(client.get_guild(guild.id).members) == len(guild.members)

        url = f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}/messages"
        async with http.post(url, json={"content": "!ping"}) as response:
            ping = await response.json()

        async def pong_posted() -> bool:
            async with http.get(
                f"{sim.control_url}/channels/{guild.system_channel_id}/messages"
            ) as r:
                messages = await r.json()
            return any(
                m["content"] == "Pong!"
                and m["author"]["id"] == str(sim.world.bot.id)
                and m.get("message_reference", {}).get("message_id") == ping["id"]
                for m in messages
            )

        await _wait_for(pong_posted, 10)

        async with http.post(f"{sim.control_url}/shards/0/reconnect") as response:
            assert response.status == 200
        await asyncio.wait_for(resumed.wait(), 15)
        async with http.get(f"{sim.control_url}/stats") as response:
            stats = await response.json()
        assert stats["resumes"] == 1 and stats["identifies"] == 1
        assert stats["connections"]["by_path"].get("/resume") == 1

        # Still working after the resume.
        async with http.post(url, json={"content": "!ping"}) as response:
            ping = await response.json()
        await _wait_for(pong_posted, 10)
        async with http.get(f"{sim.control_url}/rest-log") as response:
            log = await response.json()
        paths = {(e["method"], e["path"]) for e in log}
        assert ("GET", "/users/@me") in paths
        assert ("POST", f"/channels/{guild.system_channel_id}/messages") in paths
    finally:
        await client.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(runner, 10)
