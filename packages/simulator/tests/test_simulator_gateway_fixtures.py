"""Fidelity: gateway dispatches carry the documented objects field for field.

Each fixture in `tests/gateway_fixtures/` is a payload as Discord's developer docs show it (see
that directory's README for the source of every part). The test compares key sets recursively:
a documented key the simulator does not send fails, and so does a key it sends that the docs do
not document, unless `UNDOCUMENTED` below names it with the reason it is there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

FIXTURES = Path(__file__).parent / "gateway_fixtures"
TOKEN = "test-token"
# GUILDS | GUILD_MEMBERS | GUILD_MESSAGES | MESSAGE_CONTENT
INTENTS = 1 | 2 | 512 | 32768

# Keys Discord sends that the docs' tables do not list, by event and path.
UNDOCUMENTED: dict[tuple[str, str], set[str]] = {
    # READY for bots also carries these (empty) user-account fields, which discord.py and others
    # read when present; the docs' table lists only the bot-relevant ones.
    ("READY", ""): {
        "user_settings",
        "private_channels",
        "relationships",
        "presences",
        "guild_join_requests",
        "geo_ordered_rtc_regions",
        "session_type",
        "_trace",
    },
    # Required in Discord's OpenAPI spec (GuildResponse) though missing from the docs' table.
    ("GUILD_CREATE", ""): {"home_header", "nsfw"},
}


# Optional fields of the documented object (in its table, not in the example) that the simulator
# sends in some cases.
OPTIONAL: dict[tuple[str, str], set[str]] = {
    ("MESSAGE_CREATE", ""): {"nonce", "message_reference", "referenced_message"},
}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def key_differences(event: str, documented: Any, sent: Any, path: str = "") -> list[str]:
    """Every key documented but not sent, or sent but not documented, as `path.key: why`."""
    problems: list[str] = []
    if isinstance(documented, dict) and isinstance(sent, dict):
        allowed = UNDOCUMENTED.get((event, path), set()) | OPTIONAL.get((event, path), set())
        problems += [f"{path}.{k}: documented, not sent" for k in documented.keys() - sent.keys()]
        problems += [
            f"{path}.{k}: sent, not documented" for k in sent.keys() - documented.keys() - allowed
        ]
        for key in sorted(documented.keys() & sent.keys()):
            problems += key_differences(event, documented[key], sent[key], f"{path}.{key}")
    elif isinstance(documented, list) and isinstance(sent, list) and documented and sent:
        problems += key_differences(event, documented[0], sent[0], f"{path}[]")
    return problems


def assert_matches(event: str, name: str, sent: dict[str, Any]) -> None:
    problems = key_differences(event, fixture(name), sent)
    assert not problems, f"{event} differs from the docs:\n" + "\n".join(problems)


async def test_ready_guild_create_member_add_and_message_create_match_the_docs(
    make_sim: Any, gateway: Any, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(guilds=1, members_per_guild=2)
    guild = next(iter(sim.world.guilds.values()))
    async with gateway(sim) as gw:
        ready = await gw.identify(INTENTS, shard=[0, 1])
        assert ready["t"] == "READY"
        assert_matches("READY", "ready", ready["d"])
        created = await gw.recv_event("GUILD_CREATE")
        assert_matches("GUILD_CREATE", "guild_create", created["d"])

        member = sim.actions.join(guild.id, 3)
        added = await gw.recv_event("GUILD_MEMBER_ADD")
        assert added["d"]["user"]["id"] == str(member.user.id)
        assert_matches("GUILD_MEMBER_ADD", "guild_member_add", added["d"])

        sim.actions.post_message(guild.system_channel_id, member.user.id, "hello")
        while True:
            message = await gw.recv_event("MESSAGE_CREATE")
            if message["d"]["content"] == "hello":
                break
        assert_matches("MESSAGE_CREATE", "message_create", message["d"])

        # The flood path fills a pre-encoded template: the same shape is required of it.
        async with http.post(
            f"{sim.control_url}/flood", json={"event": "MESSAGE_CREATE", "count": 1, "wait": True}
        ) as response:
            assert response.status == 200, await response.text()
        flooded = await gw.recv_event("MESSAGE_CREATE")
        assert flooded["d"]["id"] != message["d"]["id"]
        assert_matches("MESSAGE_CREATE", "message_create", flooded["d"])


async def test_interaction_create_matches_the_docs(
    make_sim: Any, gateway: Any, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(guilds=1, members_per_guild=2)
    guild = next(iter(sim.world.guilds.values()))
    command = {
        "name": "cardsearch",
        "description": "Find a card",
        "options": [{"type": 3, "name": "cardname", "description": "The card"}],
    }
    url = f"{sim.api_url}/applications/{sim.world.application_id}/commands"
    async with http.post(url, json=command, headers={"Authorization": f"Bot {TOKEN}"}) as response:
        assert response.status == 201, await response.text()
    async with gateway(sim) as gw:
        await gw.identify(INTENTS)
        await gw.recv_event("GUILD_CREATE")
        invoke = (
            f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}/interactions"
        )
        body = {"command": "cardsearch", "options": {"cardname": "The Gitrog Monster"}}
        async with http.post(invoke, json=body) as response:
            assert response.status == 200, await response.text()
            created = await response.json()
        interaction = await gw.recv_event("INTERACTION_CREATE")
        assert interaction["d"]["id"] == created["id"]
        assert_matches("INTERACTION_CREATE", "interaction_create", interaction["d"])


def test_the_comparison_reports_missing_and_undocumented_keys() -> None:
    documented = {"a": 1, "user": {"id": "1", "mfa_enabled": False}, "list": [{"x": 1}]}
    sent = {"a": 1, "extra": 2, "user": {"id": "1"}, "list": [{"x": 1, "y": 2}]}
    assert sorted(key_differences("X", documented, sent)) == [
        ".extra: sent, not documented",
        ".list[].y: sent, not documented",
        ".user.mfa_enabled: documented, not sent",
    ]


def test_fixtures_are_valid_json_objects() -> None:
    names = sorted(p.stem for p in FIXTURES.glob("*.json"))
    assert {
        "ready",
        "guild_create",
        "guild_member_add",
        "message_create",
        "interaction_create",
    } <= set(names)
    for name in names:
        assert isinstance(fixture(name), dict)
