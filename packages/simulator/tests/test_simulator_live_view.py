"""The live view's channel items: mentions as names, "used /ping", ephemeral and failed answers."""

from __future__ import annotations

import asyncio

from spectacles.simulator._mentions import render_mentions

TOKEN = "test-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}


async def _view(sim, http, channel_id):
    async with http.get(f"{sim.control_url}/channels/{channel_id}/view") as response:
        assert response.status == 200
        return await response.json()


def _human(guild):
    return next(m for m in guild.members.values() if not m.user.bot)


async def test_mentions_render_as_discord_shows_them(sim, http):
    guild = next(iter(sim.world.guilds.values()))
    member = _human(guild)
    moderator = next(r for r in guild.roles if r.name == "Moderator")
    mod_log = guild.channels[guild.mod_log_channel_id]
    content = (
        f"hi <@{member.user.id}> and <@!{member.user.id}>, see <#{mod_log.id}>, "
        f"ask <@&{moderator.id}>; <@1> <#2> <@&3> try </ping:4>"
    )
    url = f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}/messages"
    async with http.post(url, json={"content": content}) as response:
        assert response.status == 200
    name = member.user.global_name or member.user.username
    expected = (
        f"hi @{name} and @{name}, see #mod-log, ask @Moderator; "
        "@unknown-user #unknown @unknown-role try /ping"
    )
    items = await _view(sim, http, guild.system_channel_id)
    assert items[-1]["text"] == expected
    member.nick = "Nicky"
    assert render_mentions(sim.world, guild, f"<@{member.user.id}>") == "@Nicky"


async def _register_and_invoke(sim, http, guild, user_id):
    url = f"{sim.api_url}/applications/{sim.world.application_id}/commands"
    async with http.post(url, json={"name": "ping", "description": "p"}, headers=AUTH) as r:
        assert r.status in (200, 201)
    url = f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}/interactions"
    async with http.post(url, json={"command": "ping", "user_id": str(user_id)}) as r:
        assert r.status == 200
        return await r.json()


async def test_used_command_ephemeral_and_public_answers(sim, http):
    guild = next(iter(sim.world.guilds.values()))
    member = _human(guild)
    name = member.user.global_name or member.user.username
    created = await _register_and_invoke(sim, http, guild, member.user.id)
    items = await _view(sim, http, guild.system_channel_id)
    assert items[-1]["kind"] == "pending" and items[-1]["used"] == {
        "user": name,
        "command": "/ping",
    }
    callback = f"{sim.api_url}/interactions/{created['id']}/{created['token']}/callback"
    body = {"type": 4, "data": {"content": f"Pong, <@{member.user.id}>!", "flags": 64}}
    async with http.post(callback, json=body) as r:
        assert r.status == 204
    items = await _view(sim, http, guild.system_channel_id)
    answer = items[-1]
    assert answer["kind"] == "ephemeral" and answer["ephemeral"] is True
    assert answer["text"] == f"Pong, @{name}!" and answer["bot"] is True
    assert answer["used"] == {"user": name, "command": "/ping"}
    assert not any(i["kind"] == "pending" for i in items)
    # A public answer is a channel message carrying the same "used /ping" line.
    created = await _register_and_invoke(sim, http, guild, member.user.id)
    callback = f"{sim.api_url}/interactions/{created['id']}/{created['token']}/callback"
    async with http.post(callback, json={"type": 4, "data": {"content": "Pong!"}}) as r:
        assert r.status == 204
    items = await _view(sim, http, guild.system_channel_id)
    assert items[-1]["kind"] == "message" and items[-1]["ephemeral"] is False
    assert items[-1]["used"]["command"] == "/ping" and items[-1]["text"] == "Pong!"


async def test_failed_interaction_shows_the_application_did_not_respond(make_sim, http):
    sim = await make_sim(interaction_response_timeout=0.2)
    guild = next(iter(sim.world.guilds.values()))
    await _register_and_invoke(sim, http, guild, _human(guild).user.id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        items = await _view(sim, http, guild.system_channel_id)
        if items and items[-1]["kind"] == "failed":
            break
        assert loop.time() < deadline, items
        await asyncio.sleep(0.05)
    assert items[-1]["text"] == "The application did not respond"
    assert items[-1]["ephemeral"] is True and items[-1]["used"]["command"] == "/ping"


async def test_ui_page_uses_the_view(sim, http):
    async with http.get(sim.ui_url) as response:
        page = await response.text()
    assert "/view?limit=" in page and "can see this" in page and " used " in page
