"""The chat scenario: `/ping` appears only once the bot has registered a `ping` command."""

from __future__ import annotations

import asyncio

from spectacles.simulator._scenarios import ScenarioSettings, run_scenarios

AUTH = {"Authorization": "Bot test-token"}


def _bang_pings(sim) -> int:
    return sum(
        1
        for guild in sim.world.guilds.values()
        for m in sim.world.channels[guild.system_channel_id].messages
        if m.content == "!ping"
    )


async def _until(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_chat_uses_slash_ping_only_once_registered(make_sim, http):
    sim = await make_sim(system_join_messages=False)
    settings = ScenarioSettings(chat_interval=0.01, ping_every=1, slash_share=1.0)
    tasks = run_scenarios(sim, ["chat"], settings)
    try:
        await _until(lambda: _bang_pings(sim) >= 5)
        assert not sim.interactions.by_id  # nothing offers /ping yet
        url = f"{sim.api_url}/applications/{sim.world.application_id}/commands"
        async with http.post(url, json={"name": "ping", "description": "p"}, headers=AUTH) as r:
            assert r.status == 201
        await _until(lambda: len(sim.interactions.by_id) >= 3)
        bang = _bang_pings(sim)
        await _until(lambda: len(sim.interactions.by_id) >= 6)
        assert _bang_pings(sim) == bang  # every ping is now a slash command (slash_share 1.0)
        names = {i.command.name for i in sim.interactions.by_id.values() if i.command}
        assert names == {"ping"}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
