"""Fidelity: every REST answer of the simulator validates against Discord's own OpenAPI spec.

The spec is vendored in `tests/spec/` (see its README for the commit). Each case below makes
one request and checks the status is one the spec documents for that operation, and the body
against that status's JSON schema (Draft 2020-12, `$ref`s resolved inside the spec document).
`test_every_rest_route_has_a_case` walks the simulator's aiohttp router, so a route added
without a case here fails the suite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from spectacles.simulator import Simulator
from spectacles.simulator._rest import API_PREFIX

SPEC_PATH = Path(__file__).parent / "spec" / "openapi.json"
SPEC_URI = "urn:discord:openapi"
TOKEN = "test-token"
UNKNOWN = "1" * 18  # a well-formed snowflake naming nothing


@cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def _apply_errata(spec: dict[str, Any]) -> dict[str, Any]:
    """Where the spec contradicts the developer docs, follow the docs (as the spec's README says).

    - Per-field errors (`errors.<field>._errors[]`) carry string codes such as
      "BASE_TYPE_REQUIRED" (docs: reference.mdx "Error Messages"); the spec reuses the top-level
      `Error` schema with an integer `code`.
    - `guild.region` is `?string` and the docs' example guild sends `null` (resources/guild.mdx);
      the spec types it as a non-null string.
    """
    schemas = spec["components"]["schemas"]
    schemas["InnerErrors"]["properties"]["_errors"]["items"] = {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    }
    for name in ("GuildResponse", "GuildWithCountsResponse"):
        schemas[name]["properties"]["region"] = {"type": ["string", "null"]}
    return spec


@cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(_apply_errata(_spec()), DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


def _template_key(template: str) -> str:
    """`/guilds/{guild_id}` and `/guilds/{id}` name the same operation."""
    return re.sub(r"\{[^}]+\}", "{}", template)


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def spec_operation(method: str, template: str) -> tuple[str, dict[str, Any]]:
    """The spec's path key and operation object for a simulator route."""
    paths = {_template_key(p): p for p in _spec()["paths"]}
    path = paths.get(_template_key(template))
    assert path is not None, f"{template} is not in Discord's OpenAPI spec"
    operation = _spec()["paths"][path].get(method.lower())
    assert operation is not None, f"{method} {path} is not in Discord's OpenAPI spec"
    return path, operation


def check_response(method: str, template: str, status: int, body: bytes) -> None:
    """Assert `status` is documented for the operation and `body` matches its schema."""
    path, operation = spec_operation(method, template)
    responses = operation["responses"]
    key = next((k for k in (str(status), f"{status // 100}XX") if k in responses), None)
    assert key is not None, f"{method} {path}: status {status} not in {sorted(responses)}"
    response = responses[key]
    pointer = ["paths", path, method.lower(), "responses", key]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        response = _spec()["components"]["responses"][name]
        pointer = ["components", "responses", name]
    content = response.get("content", {}).get("application/json")
    if content is None:
        assert body == b"", f"{method} {path} {status}: the spec documents no body, got {body!r}"
        return
    schema = {"$ref": f"{SPEC_URI}#/{_pointer(*pointer, 'content', 'application/json', 'schema')}"}
    validator = Draft202012Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(json.loads(body)), key=lambda e: list(e.absolute_path))
    details = "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {_describe(e)}" for e in errors
    )
    assert not errors, f"{method} {path} {status} does not match the spec:\n{details}"


def _describe(error: Any) -> str:
    """The deepest reasons of a oneOf/anyOf failure say which field is wrong."""
    if error.context:
        best = min(error.context, key=lambda e: len(list(e.absolute_path)) * -1)
        return f"{error.message[:120]} (e.g. {best.message[:200]})"
    return error.message[:300]


# -- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Ids a case fills its path and body with."""

    guild: int
    channel: int
    owner: int
    member: int
    bot: int
    message: int


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    template: str
    status: int
    params: Callable[[World], dict[str, Any]] = lambda w: {}
    body: Callable[[World], Any] | None = None
    setup: Callable[[Simulator, World], None] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    # Async preparation through the API itself (commands, interactions); returns path params.
    prepare: (
        Callable[[Simulator, World, aiohttp.ClientSession], Awaitable[dict[str, Any]]] | None
    ) = None
    auth: bool = True

    def url(self, sim: Simulator, world: World, prepared: dict[str, Any]) -> str:
        path = self.template.format(**{**self.params(world), **prepared})
        return f"{sim.api_url}{path}{'?' + self.query if self.query else ''}"


def _guild(w: World) -> dict[str, Any]:
    return {"guild_id": w.guild}


def _member(w: World) -> dict[str, Any]:
    return {"guild_id": w.guild, "user_id": w.member}


def _channel(w: World) -> dict[str, Any]:
    return {"channel_id": w.channel}


def _in_a_day() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


def _ban(sim: Simulator, w: World) -> None:
    sim.actions.ban(w.guild, w.member, reason="spam", delete_message_seconds=0)


CASES: list[Case] = [
    Case("gateway", "GET", "/gateway", 200),
    Case("gateway bot", "GET", "/gateway/bot", 200),
    Case("current user", "GET", "/users/@me", 200),
    Case("user", "GET", "/users/{user_id}", 200, lambda w: {"user_id": w.member}),
    Case("bot user", "GET", "/users/{user_id}", 200, lambda w: {"user_id": w.bot}),
    Case("unknown user", "GET", "/users/{user_id}", 404, lambda w: {"user_id": UNKNOWN}),
    Case("bad snowflake", "GET", "/users/{user_id}", 400, lambda w: {"user_id": "abc"}),
    Case("oauth2 application", "GET", "/oauth2/applications/@me", 200),
    Case("application", "GET", "/applications/@me", 200),
    Case("default soundboard sounds", "GET", "/soundboard-default-sounds", 200),
    Case("guild", "GET", "/guilds/{guild_id}", 200, _guild),
    Case("unknown guild", "GET", "/guilds/{guild_id}", 404, lambda w: {"guild_id": UNKNOWN}),
    Case(
        "modify guild",
        "PATCH",
        "/guilds/{guild_id}",
        200,
        _guild,
        lambda w: {"verification_level": 3, "name": "renamed"},
    ),
    Case(
        "modify guild, bad level",
        "PATCH",
        "/guilds/{guild_id}",
        400,
        _guild,
        lambda w: {"verification_level": 9},
    ),
    Case("guild channels", "GET", "/guilds/{guild_id}/channels", 200, _guild),
    Case("member", "GET", "/guilds/{guild_id}/members/{user_id}", 200, _member),
    Case(
        "unknown member",
        "GET",
        "/guilds/{guild_id}/members/{user_id}",
        404,
        lambda w: {"guild_id": w.guild, "user_id": UNKNOWN},
    ),
    Case(
        "timeout member",
        "PATCH",
        "/guilds/{guild_id}/members/{user_id}",
        200,
        _member,
        lambda w: {"communication_disabled_until": _in_a_day(), "nick": "calm"},
    ),
    Case(
        "timeout the owner",
        "PATCH",
        "/guilds/{guild_id}/members/{user_id}",
        403,
        lambda w: {"guild_id": w.guild, "user_id": w.owner},
        lambda w: {"communication_disabled_until": _in_a_day()},
    ),
    Case("kick", "DELETE", "/guilds/{guild_id}/members/{user_id}", 204, _member),
    Case("ban", "GET", "/guilds/{guild_id}/bans/{user_id}", 200, _member, setup=_ban),
    Case("no ban", "GET", "/guilds/{guild_id}/bans/{user_id}", 404, _member),
    Case(
        "ban member",
        "PUT",
        "/guilds/{guild_id}/bans/{user_id}",
        204,
        _member,
        lambda w: {"delete_message_seconds": 3600},
        headers={"X-Audit-Log-Reason": "spam"},
    ),
    Case(
        "ban, bad seconds",
        "PUT",
        "/guilds/{guild_id}/bans/{user_id}",
        400,
        _member,
        lambda w: {"delete_message_seconds": 10**7},
    ),
    Case("unban", "DELETE", "/guilds/{guild_id}/bans/{user_id}", 204, _member, setup=_ban),
    Case("channel", "GET", "/channels/{channel_id}", 200, _channel),
    Case(
        "unknown channel", "GET", "/channels/{channel_id}", 404, lambda w: {"channel_id": UNKNOWN}
    ),
    Case("messages", "GET", "/channels/{channel_id}/messages", 200, _channel),
    Case(
        "messages, bad limit",
        "GET",
        "/channels/{channel_id}/messages",
        400,
        _channel,
        query="limit=500",
    ),
    Case(
        "message",
        "GET",
        "/channels/{channel_id}/messages/{message_id}",
        200,
        lambda w: {"channel_id": w.channel, "message_id": w.message},
    ),
    Case(
        "unknown message",
        "GET",
        "/channels/{channel_id}/messages/{message_id}",
        404,
        lambda w: {"channel_id": w.channel, "message_id": UNKNOWN},
    ),
    Case(
        "create message",
        "POST",
        "/channels/{channel_id}/messages",
        200,
        _channel,
        lambda w: {"content": "hi", "embeds": [{"title": "t", "description": "d"}], "nonce": "7"},
    ),
    Case(
        "reply",
        "POST",
        "/channels/{channel_id}/messages",
        200,
        _channel,
        lambda w: {"content": "Pong!", "message_reference": {"message_id": str(w.message)}},
    ),
    Case("empty message", "POST", "/channels/{channel_id}/messages", 400, _channel, lambda w: {}),
    Case(
        "message too long",
        "POST",
        "/channels/{channel_id}/messages",
        400,
        _channel,
        lambda w: {"content": "x" * 2001},
    ),
]


# -- application commands, interactions and their webhooks (sim-interactions' routes) ----------

PING = {"name": "ping", "description": "Check the bot is alive"}
AUTH = {"Authorization": f"Bot {TOKEN}"}


def _app(w: World) -> dict[str, Any]:
    return {"application_id": w.bot}


def _app_guild(w: World) -> dict[str, Any]:
    return {"application_id": w.bot, "guild_id": w.guild}


async def _register(
    sim: Simulator, w: World, http: aiohttp.ClientSession, guild: bool = False
) -> dict[str, Any]:
    scope = f"/guilds/{w.guild}" if guild else ""
    url = f"{sim.api_url}/applications/{w.bot}{scope}/commands"
    async with http.post(url, json=PING, headers=AUTH) as response:
        assert response.status in (200, 201), await response.text()
        return {"command_id": (await response.json())["id"]}


async def _guild_command(sim: Simulator, w: World, http: aiohttp.ClientSession) -> dict[str, Any]:
    return await _register(sim, w, http, guild=True)


async def _interaction(sim: Simulator, w: World, http: aiohttp.ClientSession) -> dict[str, Any]:
    await _register(sim, w, http)
    url = f"{sim.control_url}/guilds/{w.guild}/channels/{w.channel}/interactions"
    async with http.post(url, json={"command": "ping", "user_id": str(w.member)}) as response:
        assert response.status == 200, await response.text()
        created = await response.json()
    return {"interaction_id": created["id"], "interaction_token": created["token"]}


async def _answered(sim: Simulator, w: World, http: aiohttp.ClientSession) -> dict[str, Any]:
    """An interaction with an initial response message and one follow-up."""
    ids = await _interaction(sim, w, http)
    callback = f"{sim.api_url}/interactions/{ids['interaction_id']}/{ids['interaction_token']}"
    async with http.post(
        f"{callback}/callback", json={"type": 4, "data": {"content": "Pong!"}}
    ) as response:
        assert response.status == 204, await response.text()
    follow = f"{sim.api_url}/webhooks/{w.bot}/{ids['interaction_token']}?wait=true"
    async with http.post(follow, json={"content": "and more"}) as response:
        assert response.status == 200, await response.text()
        ids["message_id"] = (await response.json())["id"]
    return ids


def _command_case(
    name: str, method: str, template: str, status: int, guild: bool = False, **kw: Any
) -> Case:
    params = _app_guild if guild else _app
    return Case(name, method, template, status, params, **kw)


_GLOBAL = "/applications/{application_id}/commands"
_GUILD = "/applications/{application_id}/guilds/{guild_id}/commands"
_HOOK = "/webhooks/{application_id}/{interaction_token}"

INTERACTION_CASES: list[Case] = [
    Case("edit application", "PATCH", "/applications/@me", 200, body=lambda w: {}),
    Case(
        "edit application, bad url",
        "PATCH",
        "/applications/@me",
        400,
        body=lambda w: {"interactions_endpoint_url": "not a url"},
    ),
    _command_case("create command", "POST", _GLOBAL, 201, body=lambda w: PING),
    _command_case(
        "create command, bad name",
        "POST",
        _GLOBAL,
        400,
        body=lambda w: {"name": "Bad Name!", "description": "x"},
    ),
    _command_case("commands", "GET", _GLOBAL, 200, prepare=_register),
    _command_case("overwrite commands", "PUT", _GLOBAL, 200, body=lambda w: [PING]),
    _command_case("command", "GET", _GLOBAL + "/{command_id}", 200, prepare=_register),
    _command_case(
        "unknown command",
        "GET",
        _GLOBAL + "/{command_id}",
        404,
        prepare=lambda s, w, h: _unknown("command_id"),
    ),
    _command_case(
        "edit command",
        "PATCH",
        _GLOBAL + "/{command_id}",
        200,
        prepare=_register,
        body=lambda w: {"description": "Still alive?"},
    ),
    _command_case("delete command", "DELETE", _GLOBAL + "/{command_id}", 204, prepare=_register),
    _command_case("create guild command", "POST", _GUILD, 201, True, body=lambda w: PING),
    _command_case("guild commands", "GET", _GUILD, 200, True, prepare=_guild_command),
    _command_case("overwrite guild commands", "PUT", _GUILD, 200, True, body=lambda w: [PING]),
    _command_case(
        "guild command", "GET", _GUILD + "/{command_id}", 200, True, prepare=_guild_command
    ),
    _command_case(
        "edit guild command",
        "PATCH",
        _GUILD + "/{command_id}",
        200,
        True,
        prepare=_guild_command,
        body=lambda w: {"description": "Still alive?"},
    ),
    _command_case(
        "delete guild command",
        "DELETE",
        _GUILD + "/{command_id}",
        204,
        True,
        prepare=_guild_command,
    ),
    Case(
        "interaction callback",
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        204,
        prepare=_interaction,
        body=lambda w: {"type": 4, "data": {"content": "Pong!"}},
        auth=False,
    ),
    Case(
        "interaction callback with response",
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        200,
        prepare=_interaction,
        body=lambda w: {"type": 4, "data": {"content": "Pong!"}},
        query="with_response=true",
        auth=False,
    ),
    Case(
        "interaction callback, already answered",
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        400,
        prepare=_answered,
        body=lambda w: {"type": 4, "data": {"content": "again"}},
        auth=False,
    ),
    Case(
        "follow-up",
        "POST",
        _HOOK,
        200,
        _app,
        prepare=_answered,
        body=lambda w: {"content": "follow"},
        query="wait=true",
        auth=False,
    ),
    Case(
        "follow-up, no wait",
        "POST",
        _HOOK,
        204,
        _app,
        prepare=_answered,
        body=lambda w: {"content": "follow"},
        auth=False,
    ),
    Case(
        "original",
        "GET",
        _HOOK + "/messages/@original",
        200,
        _app,
        prepare=_answered,
        auth=False,
    ),
    Case(
        "edit original",
        "PATCH",
        _HOOK + "/messages/@original",
        200,
        _app,
        prepare=_answered,
        body=lambda w: {"content": "edited"},
        auth=False,
    ),
    Case(
        "delete original",
        "DELETE",
        _HOOK + "/messages/@original",
        204,
        _app,
        prepare=_answered,
        auth=False,
    ),
    Case(
        "follow-up message",
        "GET",
        _HOOK + "/messages/{message_id}",
        200,
        _app,
        prepare=_answered,
        auth=False,
    ),
    Case(
        "edit follow-up",
        "PATCH",
        _HOOK + "/messages/{message_id}",
        200,
        _app,
        prepare=_answered,
        body=lambda w: {"content": "edited"},
        auth=False,
    ),
    Case(
        "delete follow-up",
        "DELETE",
        _HOOK + "/messages/{message_id}",
        204,
        _app,
        prepare=_answered,
        auth=False,
    ),
    Case(
        "unknown follow-up",
        "GET",
        _HOOK + "/messages/{message_id}",
        404,
        lambda w: {"application_id": w.bot, "message_id": UNKNOWN},
        prepare=_interaction,
        auth=False,
    ),
]
CASES += INTERACTION_CASES


async def _unknown(name: str) -> dict[str, Any]:
    return {name: UNKNOWN}


async def _world(sim: Simulator) -> World:
    guild = next(iter(sim.world.guilds.values()))
    bot = sim.world.bot.id
    member = next(uid for uid in guild.members if uid not in (guild.owner_id, bot))
    message = sim.actions.post_message(guild.system_channel_id, member, f"hello <@{bot}>")
    return World(guild.id, guild.system_channel_id, guild.owner_id, member, bot, message.id)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_rest_answer_matches_discord_openapi_spec(
    case: Case, make_sim: Any, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(guilds=1, members_per_guild=4)
    world = await _world(sim)
    if case.setup is not None:
        case.setup(sim, world)
    prepared = await case.prepare(sim, world, http) if case.prepare is not None else {}
    headers = {"Authorization": f"Bot {TOKEN}"} if case.auth else {}
    headers.update(case.headers)
    body = case.body(world) if case.body is not None else None
    async with http.request(
        case.method, case.url(sim, world, prepared), json=body, headers=headers
    ) as response:
        status, raw = response.status, await response.read()
    assert status == case.status, raw
    check_response(case.method, case.template, status, raw)


async def test_unauthorized_and_rate_limited_answers_match_the_spec(
    make_sim: Any, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(guilds=1, members_per_guild=2, global_rate_limit=1)
    async with http.get(f"{sim.api_url}/users/@me") as response:
        assert response.status == 401
        check_response("GET", "/users/@me", 401, await response.read())
    statuses = []
    for _ in range(3):
        async with http.get(
            f"{sim.api_url}/users/@me", headers={"Authorization": f"Bot {TOKEN}"}
        ) as response:
            statuses.append(response.status)
            raw = await response.read()
    assert statuses[-1] == 429
    check_response("GET", "/users/@me", 429, raw)


async def test_every_rest_route_has_a_case(sim: Simulator) -> None:
    """A REST route without a success case and a spec operation fails here."""
    served = set()
    for route in sim.app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if not canonical.startswith(API_PREFIX + "/") or "{tail" in canonical:
            continue
        if route.method in ("HEAD", "*"):
            continue
        served.add((route.method, canonical.removeprefix(API_PREFIX)))
    assert served, "no REST routes found on the router"
    covered = {(c.method, c.template) for c in CASES if c.status < 300}
    missing = sorted(served - covered)
    assert not missing, f"REST routes without an OpenAPI validation case: {missing}"
    for method, template in served:
        spec_operation(method, template)
