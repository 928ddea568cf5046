"""Application commands over REST: upsert, bulk overwrite, edit, delete, validation and limits."""

from __future__ import annotations

TOKEN = "test-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}


def _global(sim) -> str:
    return f"{sim.api_url}/applications/{sim.world.application_id}/commands"


def _guild(sim, guild_id) -> str:
    return f"{sim.api_url}/applications/{sim.world.application_id}/guilds/{guild_id}/commands"


PING = {"name": "ping", "description": "Check the bot is alive", "type": 1}


async def test_create_upserts_by_name_201_then_200(sim, http):
    async with http.post(_global(sim), json=PING, headers=AUTH) as response:
        assert response.status == 201
        first = await response.json()
    assert first["name"] == "ping" and first["application_id"] == str(sim.world.application_id)
    assert first["type"] == 1 and "guild_id" not in first
    changed = {**PING, "description": "Pong!"}
    async with http.post(_global(sim), json=changed, headers=AUTH) as response:
        assert response.status == 200
        second = await response.json()
    assert second["id"] == first["id"] and second["version"] != first["version"]
    async with http.get(_global(sim), headers=AUTH) as response:
        listed = await response.json()
    assert [c["description"] for c in listed] == ["Pong!"]
    async with http.get(f"{_global(sim)}/{first['id']}", headers=AUTH) as response:
        assert (await response.json())["description"] == "Pong!"


async def test_guild_commands_are_separate_and_need_a_known_guild(sim, http):
    guild_id = next(iter(sim.world.guilds))
    async with http.post(_guild(sim, guild_id), json=PING, headers=AUTH) as response:
        assert response.status == 201
        created = await response.json()
    assert created["guild_id"] == str(guild_id)
    async with http.get(_global(sim), headers=AUTH) as response:
        assert await response.json() == []
    async with http.post(_guild(sim, 1), json=PING, headers=AUTH) as response:
        assert (response.status, (await response.json())["code"]) == (404, 10004)


async def test_bulk_overwrite_keeps_ids_of_kept_names_and_drops_the_rest(sim, http):
    async with http.put(_global(sim), json=[PING, {**PING, "name": "old"}], headers=AUTH) as r:
        assert r.status == 200
        before = {c["name"]: c for c in await r.json()}
    new = [PING, {**PING, "name": "new"}]
    async with http.put(_global(sim), json=new, headers=AUTH) as r:
        after = {c["name"]: c for c in await r.json()}
    assert set(after) == {"ping", "new"}
    assert after["ping"]["id"] == before["ping"]["id"]
    async with http.get(f"{_global(sim)}/{before['old']['id']}", headers=AUTH) as r:
        assert (r.status, (await r.json())["code"]) == (404, 10063)
    dup = [PING, PING]
    async with http.put(_global(sim), json=dup, headers=AUTH) as r:
        body = await r.json()
    assert r.status == 400 and body["code"] == 50035
    assert (
        body["errors"]["1"]["name"]["_errors"][0]["code"] == "APPLICATION_COMMANDS_DUPLICATE_NAME"
    )


async def test_edit_and_delete(sim, http):
    async with http.post(_global(sim), json=PING, headers=AUTH) as r:
        command = await r.json()
    url = f"{_global(sim)}/{command['id']}"
    async with http.patch(url, json={"description": "edited"}, headers=AUTH) as r:
        assert r.status == 200
        assert (await r.json())["description"] == "edited"
    async with http.patch(url, json={"name": "Bad Name"}, headers=AUTH) as r:
        assert r.status == 400
        errors = (await r.json())["errors"]
        assert errors["name"]["_errors"][0]["code"] == "APPLICATION_COMMAND_INVALID_NAME"
    async with http.delete(url, headers=AUTH) as r:
        assert r.status == 204
    async with http.delete(url, headers=AUTH) as r:
        assert (r.status, (await r.json())["code"]) == (404, 10063)


async def test_validation_errors_use_discords_form_body_shape(sim, http):
    cases = [
        ({"name": "", "description": "x"}, ("name",), "BASE_TYPE_BAD_LENGTH"),
        ({"name": "a" * 33, "description": "x"}, ("name",), "BASE_TYPE_BAD_LENGTH"),
        ({"name": "Ping", "description": "x"}, ("name",), "APPLICATION_COMMAND_INVALID_NAME"),
        ({"name": "p ing", "description": "x"}, ("name",), "APPLICATION_COMMAND_INVALID_NAME"),
        ({"name": "ping"}, ("description",), "BASE_TYPE_REQUIRED"),
        ({"name": "ping", "description": "x" * 101}, ("description",), "BASE_TYPE_BAD_LENGTH"),
        ({"name": "ping", "description": "x", "type": 9}, ("type",), "BASE_TYPE_CHOICES"),
        (
            {"name": "ping", "description": "x", "options": [{"type": 42, "name": "a"}]},
            ("options", "0", "type"),
            "BASE_TYPE_CHOICES",
        ),
        (
            {
                "name": "ping",
                "description": "x",
                "options": [
                    {"type": 3, "name": "a", "description": "a"},
                    {"type": 3, "name": "b", "description": "b", "required": True},
                ],
            },
            ("options", "1", "required"),
            "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
        ),
        (
            {"name": "Ping Me", "description": "not allowed", "type": 2},
            ("description",),
            "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
        ),
    ]
    for body, path, code in cases:
        async with http.post(_global(sim), json=body, headers=AUTH) as response:
            data = await response.json()
        assert response.status == 400, body
        assert data["code"] == 50035 and data["message"] == "Invalid Form Body", body
        node = data["errors"]
        for key in path:
            node = node[key]
        assert node["_errors"][0]["code"] == code, (body, data)
    # User commands may be mixed case with spaces.
    async with http.post(_global(sim), json={"name": "Ping Me", "type": 2}, headers=AUTH) as r:
        assert r.status == 201


async def test_limit_of_100_global_chat_commands(sim, http):
    bodies = [{"name": f"c{i}", "description": "x"} for i in range(100)]
    async with http.put(_global(sim), json=bodies, headers=AUTH) as r:
        assert r.status == 200
    async with http.post(
        _global(sim), json={"name": "c100", "description": "x"}, headers=AUTH
    ) as r:
        assert (r.status, (await r.json())["code"]) == (400, 30032)
    # Replacing an existing one is still fine; so is another type.
    async with http.post(_global(sim), json={"name": "c5", "description": "y"}, headers=AUTH) as r:
        assert r.status == 200
    async with http.put(
        _global(sim), json=[*bodies, {"name": "x", "description": "x"}], headers=AUTH
    ) as r:
        assert r.status == 400


async def test_auth_and_application_id(sim, http):
    async with http.get(_global(sim)) as r:
        assert r.status == 401
    url = f"{sim.api_url}/applications/1/commands"
    async with http.get(url, headers=AUTH) as r:
        assert (r.status, (await r.json())["code"]) == (403, 50001)
