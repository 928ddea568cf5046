"""Interactions: invoking commands through the control API and answering them as Discord allows."""

from __future__ import annotations

import asyncio

import pytest

TOKEN = "test-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}
PING = {"name": "ping", "description": "Check the bot is alive"}


async def _register(sim, http, body=PING, guild_id=None):
    scope = f"/guilds/{guild_id}" if guild_id else ""
    url = f"{sim.api_url}/applications/{sim.world.application_id}{scope}/commands"
    async with http.post(url, json=body, headers=AUTH) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


def _places(sim, index=0):
    guild = list(sim.world.guilds.values())[index]
    return guild, guild.system_channel_id


async def _invoke(sim, http, guild, channel_id, body, status=200):
    url = f"{sim.control_url}/guilds/{guild.id}/channels/{channel_id}/interactions"
    async with http.post(url, json=body) as response:
        data = await response.json()
        assert response.status == status, data
        return data


async def _state(sim, http, interaction_id):
    async with http.get(f"{sim.control_url}/interactions/{interaction_id}") as response:
        assert response.status == 200
        return await response.json()


async def _callback(sim, http, created, body, query=""):
    url = f"{sim.api_url}/interactions/{created['id']}/{created['token']}/callback{query}"
    return await http.post(url, json=body)


async def _wait_state(sim, http, interaction_id, status, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = await _state(sim, http, interaction_id)
        if state["status"] == status:
            return state
        assert loop.time() < deadline, state
        await asyncio.sleep(0.05)


async def test_unregistered_command_is_refused(sim, http):
    guild, channel = _places(sim)
    data = await _invoke(sim, http, guild, channel, {"command": "ping"}, status=404)
    assert "ping" in data["message"] and "would not offer" in data["message"]
    # A command of another guild is not offered here either.
    other, _ = _places(sim, 1)
    await _register(sim, http, guild_id=other.id)
    await _invoke(sim, http, guild, channel, {"command": "ping"}, status=404)
    await _register(sim, http)
    await _invoke(sim, http, guild, channel, {"command": "ping"})


async def test_interaction_create_reaches_the_guilds_shard(make_sim, gateway, http):
    sim = await make_sim(shards=2, guilds=2)
    await _register(sim, http)
    guild = next(g for g in sim.world.guilds.values() if sim.world.shard_of(g.id, 2) == 1)
    async with gateway(sim) as shard0, gateway(sim) as shard1:
        await shard0.identify(shard=[0, 2])
        await shard1.identify(shard=[1, 2])
        await shard1.recv_event("GUILD_CREATE")
        created = await _invoke(
            sim,
            http,
            guild,
            guild.system_channel_id,
            {"command": "ping", "user_id": str(guild.owner_id)},
        )
        event = await shard1.recv_event("INTERACTION_CREATE")
        with pytest.raises(asyncio.TimeoutError):
            await shard0.recv_event("INTERACTION_CREATE", timeout=0.5)
    d = event["d"]
    assert d["id"] == created["id"] and d["token"] == created["token"]
    assert d["type"] == 2 and d["version"] == 1
    assert d["application_id"] == str(sim.world.application_id)
    assert d["data"]["name"] == "ping" and d["data"]["type"] == 1
    assert d["guild_id"] == str(guild.id) and d["channel_id"] == str(guild.system_channel_id)
    assert d["channel"]["id"] == str(guild.system_channel_id)
    assert d["member"]["user"]["id"] == str(guild.owner_id)
    assert int(d["member"]["permissions"]) & 8  # the owner has everything
    for key in ("app_permissions", "locale", "guild_locale", "entitlements", "context"):
        assert key in d, key
    assert d["authorizing_integration_owners"] == {"0": str(guild.id)}


async def test_respond_with_a_message(sim, gateway, http):
    await _register(sim, http)
    guild, channel = _places(sim)
    async with gateway(sim) as client:
        await client.identify()
        created = await _invoke(sim, http, guild, channel, {"command": "ping"})
        await client.recv_event("INTERACTION_CREATE")
        response = await _callback(
            sim, http, created, {"type": 4, "data": {"content": "Pong!"}}, "?with_response=true"
        )
        assert response.status == 200
        answer = await response.json()
        event = await client.recv_event("MESSAGE_CREATE")
    message = answer["resource"]["message"]
    assert answer["resource"]["type"] == 4
    assert answer["interaction"]["response_message_id"] == message["id"]
    assert event["d"]["id"] == message["id"] and event["d"]["content"] == "Pong!"
    assert message["webhook_id"] == str(sim.world.application_id)
    assert message["interaction_metadata"]["id"] == created["id"]
    assert message["interaction_metadata"]["authorizing_integration_owners"] == {"0": str(guild.id)}
    assert message["interaction"]["name"] == "ping" and message["type"] == 20
    assert answer["interaction"]["type"] == 2 and answer["interaction"]["channel_id"] == str(
        channel
    )
    state = await _state(sim, http, created["id"])
    assert state["status"] == "responded" and state["response"]["type"] == 4
    assert state["original"]["content"] == "Pong!"
    async with http.get(f"{sim.control_url}/channels/{channel}/messages") as r:
        assert message["id"] in [m["id"] for m in await r.json()]
    # A second initial response is refused.
    again = await _callback(sim, http, created, {"type": 4, "data": {"content": "again"}})
    assert again.status == 400 and (await again.json())["code"] == 40060


async def test_defer_then_followup_then_edit_original(sim, gateway, http):
    await _register(sim, http)
    guild, channel = _places(sim)
    created = await _invoke(sim, http, guild, channel, {"command": "ping"})
    response = await _callback(sim, http, created, {"type": 5})
    assert response.status == 204
    state = await _state(sim, http, created["id"])
    assert state["status"] == "deferred" and state["original"]["flags"] & 128
    hook = f"{sim.api_url}/webhooks/{sim.world.application_id}/{created['token']}"
    # The first follow-up after a deferral completes the "thinking" message.
    async with http.post(hook + "?wait=true", json={"content": "done"}) as r:
        assert r.status == 200
        first = await r.json()
    assert first["id"] == state["original"]["id"] and not first["flags"] & 128
    async with http.post(hook + "?wait=true", json={"content": "more", "flags": 64}) as r:
        followup = await r.json()
    assert followup["id"] != first["id"] and followup["flags"] == 64
    assert followup["interaction_metadata"]["original_response_message_id"] == first["id"]
    async with http.patch(hook + "/messages/@original", json={"content": "edited"}) as r:
        assert r.status == 200
        assert (await r.json())["content"] == "edited"
    async with http.get(hook + f"/messages/{followup['id']}") as r:
        assert (await r.json())["content"] == "more"
    async with http.get(f"{sim.control_url}/channels/{channel}/messages") as r:
        ids = [m["id"] for m in await r.json()]
    assert first["id"] in ids and followup["id"] not in ids  # ephemeral stays out of the channel
    state = await _state(sim, http, created["id"])
    assert state["status"] == "responded" and state["original"]["content"] == "edited"
    assert [m["id"] for m in state["followups"]] == [followup["id"]]
    async with http.delete(hook + "/messages/@original") as r:
        assert r.status == 204
    async with http.get(hook + "/messages/@original") as r:
        assert (r.status, (await r.json())["code"]) == (404, 10008)
    async with http.get(f"{sim.control_url}/rest-log") as r:
        paths = [e["path"] for e in await r.json()]
    assert not any(created["token"] in p for p in paths)


async def test_no_response_in_time_fails_the_interaction(make_sim, http):
    sim = await make_sim(interaction_response_timeout=0.3)
    await _register(sim, http)
    guild, channel = _places(sim)
    created = await _invoke(sim, http, guild, channel, {"command": "ping"})
    state = await _wait_state(sim, http, created["id"], "failed")
    assert state["failed"] and state["failure"] == "The application did not respond"
    assert state["failed_at"] is not None and state["response"] is None
    late = await _callback(sim, http, created, {"type": 4, "data": {"content": "late"}})
    assert late.status == 404 and (await late.json())["code"] == 10062
    hook = f"{sim.api_url}/webhooks/{sim.world.application_id}/{created['token']}"
    async with http.post(hook, json={"content": "x"}) as r:
        assert r.status == 404


async def test_followups_stop_when_the_token_expires(make_sim, http):
    sim = await make_sim(interaction_token_ttl=0.5)
    await _register(sim, http)
    guild, channel = _places(sim)
    created = await _invoke(sim, http, guild, channel, {"command": "ping"})
    assert (await _callback(sim, http, created, {"type": 5})).status == 204
    hook = f"{sim.api_url}/webhooks/{sim.world.application_id}/{created['token']}"
    async with http.post(hook, json={"content": "in time"}) as r:
        assert r.status == 204
    state = await _state(sim, http, created["id"])
    await asyncio.sleep(0.6)  # time itself is what expires the token: nothing to await instead
    async with http.post(hook, json={"content": "too late"}) as r:
        assert (r.status, (await r.json())["code"]) == (401, 50027)
    async with http.patch(hook + "/messages/@original", json={"content": "x"}) as r:
        assert r.status == 401
    assert state["original"]["content"] == "in time"


async def test_callback_validation(sim, http):
    await _register(sim, http)
    guild, channel = _places(sim)
    created = await _invoke(sim, http, guild, channel, {"command": "ping"})
    for body, code in (
        ({"type": 7, "data": {"content": "x"}}, 50035),  # UPDATE_MESSAGE needs a component
        ({"type": 4, "data": {"content": ""}}, 50006),
        ({"type": 4, "data": {"content": "x" * 2001}}, 50035),
    ):
        response = await _callback(sim, http, created, body)
        assert (response.status, (await response.json())["code"]) == (400, code), body
    wrong = {**created, "token": "nope"}
    response = await _callback(sim, http, wrong, {"type": 4, "data": {"content": "x"}})
    assert (response.status, (await response.json())["code"]) == (404, 10062)
    # The bad attempts did not count as the response.
    response = await _callback(sim, http, created, {"type": 4, "data": {"content": "ok"}})
    assert response.status == 204


async def test_options_are_checked_and_resolved(sim, http):
    body = {
        **PING,
        "options": [
            {"type": 6, "name": "who", "description": "a member", "required": True},
            {"type": 4, "name": "times", "description": "n", "min_value": 1, "max_value": 3},
        ],
    }
    await _register(sim, http, body)
    guild, channel = _places(sim)
    target = str(guild.owner_id)
    for options, fragment in (
        ({}, "required"),
        ({"who": target, "nope": 1}, "no option 'nope'"),
        ({"who": target, "times": 9}, "between"),
        ({"who": "1"}, "no such"),
    ):
        data = await _invoke(
            sim, http, guild, channel, {"command": "ping", "options": options}, 400
        )
        assert fragment in data["message"], (options, data)
    created = await _invoke(
        sim, http, guild, channel, {"command": "ping", "options": {"who": target, "times": 2}}
    )
    state = await _state(sim, http, created["id"])
    assert state["data"]["options"] == [
        {"name": "who", "type": 6, "value": target},
        {"name": "times", "type": 4, "value": 2},
    ]
    assert target in state["data"]["resolved"]["users"]


BUTTON_ROW = {
    "type": 1,
    "components": [{"type": 2, "style": 1, "label": "Again", "custom_id": "again"}],
}


async def test_component_click_update_message_and_deferred_update(sim, gateway, http):
    await _register(sim, http)
    guild, channel = _places(sim)
    created = await _invoke(sim, http, guild, channel, {"command": "ping"})
    body = {"type": 4, "data": {"content": "Pong!", "components": [BUTTON_ROW]}}
    response = await _callback(sim, http, created, body, "?with_response=true")
    message = (await response.json())["resource"]["message"]
    assert message["components"] == [BUTTON_ROW]
    base = f"{sim.control_url}/guilds/{guild.id}/channels/{channel}"
    url = f"{base}/messages/{message['id']}/components"
    async with http.post(url, json={"custom_id": "nope"}) as r:
        assert r.status == 404
    async with gateway(sim) as client:
        await client.identify()
        async with http.post(url, json={"custom_id": "again"}) as r:
            click = await r.json()
        event = await client.recv_event("INTERACTION_CREATE")
        assert event["d"]["type"] == 3 and event["d"]["data"]["custom_id"] == "again"
        assert event["d"]["message"]["id"] == message["id"]
        # Slash-only types are refused for a component and vice versa.
        response = await _callback(sim, http, click, {"type": 9, "data": {}})
        assert response.status == 400
        response = await _callback(
            sim, http, click, {"type": 7, "data": {"content": "Pong again!"}}
        )
        assert response.status == 204
        update = await client.recv_event("MESSAGE_UPDATE")
    assert update["d"]["id"] == message["id"] and update["d"]["content"] == "Pong again!"
    async with http.post(url, json={"custom_id": "again"}) as r:
        click = await r.json()
    assert (await _callback(sim, http, click, {"type": 6})).status == 204
    hook = f"{sim.api_url}/webhooks/{sim.world.application_id}/{click['token']}"
    async with http.patch(hook + "/messages/@original", json={"content": "third"}) as r:
        assert r.status == 200 and (await r.json())["id"] == message["id"]
    state = await _state(sim, http, click["id"])
    assert state["status"] == "responded" and state["original"]["content"] == "third"


async def test_responses_are_outside_the_global_rate_limit(make_sim, http):
    sim = await make_sim(global_rate_limit=3)
    await _register(sim, http)
    guild, channel = _places(sim)
    created = await _invoke(sim, http, guild, channel, {"command": "ping"})
    statuses = []
    for _ in range(5):  # exhaust the global limit with the bot token
        async with http.get(sim.api_url + "/users/@me", headers=AUTH) as r:
            statuses.append(r.status)
    assert 429 in statuses
    response = await _callback(sim, http, created, {"type": 5})
    assert response.status == 204
    assert "X-RateLimit-Bucket" in response.headers  # a route bucket all the same
    hook = f"{sim.api_url}/webhooks/{sim.world.application_id}/{created['token']}"
    async with http.post(hook, json={"content": "done"}) as r:
        assert r.status == 204


async def test_subcommands_user_commands_and_modals(sim, http):
    group = {
        **PING,
        "name": "mod",
        "options": [
            {
                "type": 1,
                "name": "warn",
                "description": "warn someone",
                "options": [{"type": 6, "name": "who", "description": "x", "required": True}],
            },
            {"type": 1, "name": "status", "description": "status"},
        ],
    }
    await _register(sim, http, group)
    await _register(sim, http, {"name": "Inspect User", "type": 2})
    guild, channel = _places(sim)
    target = str(guild.owner_id)
    data = await _invoke(sim, http, guild, channel, {"command": "mod", "options": {}}, 400)
    assert "exactly one sub-command" in data["message"]
    created = await _invoke(
        sim, http, guild, channel, {"command": "mod", "options": {"warn": {"who": target}}}
    )
    state = await _state(sim, http, created["id"])
    assert state["data"]["options"] == [
        {"name": "warn", "type": 1, "options": [{"name": "who", "type": 6, "value": target}]}
    ]
    # A user command carries its target; its answer's metadata names the target user.
    created = await _invoke(
        sim, http, guild, channel, {"command": "Inspect User", "type": 2, "target_id": target}
    )
    state = await _state(sim, http, created["id"])
    assert state["data"]["target_id"] == target and target in state["data"]["resolved"]["users"]
    response = await _callback(
        sim, http, created, {"type": 4, "data": {"content": "ok"}}, "?with_response=true"
    )
    message = (await response.json())["resource"]["message"]
    assert message["type"] == 23
    assert message["interaction_metadata"]["target_user"]["id"] == target
    # A modal is a valid initial response to a command (and is checked).
    created = await _invoke(
        sim, http, guild, channel, {"command": "mod", "options": {"status": {}}}
    )
    bad = await _callback(sim, http, created, {"type": 9, "data": {"custom_id": "f", "title": ""}})
    assert bad.status == 400
    modal = {
        "custom_id": "feedback",
        "title": "Tell us",
        "components": [
            {
                "type": 1,
                "components": [{"type": 4, "custom_id": "text", "label": "Text", "style": 1}],
            }
        ],
    }
    response = await _callback(
        sim, http, created, {"type": 9, "data": modal}, "?with_response=true"
    )
    answer = await response.json()
    assert "resource" not in answer and "response_message_id" not in answer["interaction"]
    state = await _state(sim, http, created["id"])
    assert state["status"] == "responded" and state["response"]["type"] == 9
