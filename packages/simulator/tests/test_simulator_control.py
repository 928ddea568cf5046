"""Control API, intents filtering, MESSAGE_CONTENT gating, compression and floods."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import aiohttp
import pytest

from spectacles.models import Intents, Snowflake

TOKEN = "test-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}
NO_CONTENT = int(Intents.GUILDS | Intents.GUILD_MEMBERS | Intents.GUILD_MESSAGES)


def _first_guild(sim):
    return next(iter(sim.world.guilds.values()))


async def _say(http, sim, content, author_id=None):
    guild = _first_guild(sim)
    url = f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}/messages"
    body = {"content": content}
    if author_id is not None:
        body["author_id"] = str(author_id)
    async with http.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_guild_listing_and_detail(make_sim, http):
    sim = await make_sim(guilds=3, members_per_guild=7, channels_per_guild=4)
    async with http.get(f"{sim.control_url}/guilds") as response:
        guilds = await response.json()
    assert len(guilds) == 3
    first = guilds[0]
    names = [c["name"] for c in first["channels"]]
    assert len(names) == 4 and "mod-log" in names
    assert first["system_channel_id"] == first["channels"][0]["id"]
    assert first["verification_level"] in range(5)
    async with http.get(f"{sim.control_url}/guilds/{first['id']}") as response:
        detail = await response.json()
    humans = [m for m in detail["members"] if not m["bot"]]
    assert len(humans) == 7 and any(m["bot"] for m in detail["members"])
    ages = {round(m["account_age_days"]) for m in humans}
    assert len(ages) > 3 and min(ages) >= 30  # varied, established accounts
    async with http.get(f"{sim.control_url}/guilds/123") as response:
        assert response.status == 404


async def test_posted_user_message_reaches_the_bot_and_the_channel_log(sim, http, gateway):
    guild = _first_guild(sim)
    author = next(m.user for m in guild.members.values() if not m.user.bot)
    async with gateway(sim) as gw:
        await gw.identify()
        posted = await _say(http, sim, "!ping", author.id)
        event = await gw.recv_event("MESSAGE_CREATE")
    assert event["d"]["content"] == "!ping" and event["d"]["author"]["id"] == str(author.id)
    assert event["d"]["id"] == posted["id"] and "member" in event["d"]
    async with http.get(f"{sim.control_url}/channels/{guild.system_channel_id}/messages") as r:
        assert [m["content"] for m in await r.json()] == ["!ping"]
    async with http.get(
        f"{sim.control_url}/channels/{guild.system_channel_id}/messages?after={posted['id']}"
    ) as r:
        assert await r.json() == []


async def test_posting_as_a_non_member_is_refused(sim, http):
    guild = _first_guild(sim)
    url = f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}/messages"
    async with http.post(url, json={"content": "hi", "author_id": "1"}) as response:
        assert (response.status, (await response.json())["code"]) == (404, 10007)


async def test_member_joins_with_young_accounts(sim, http, gateway):
    guild = _first_guild(sim)
    async with gateway(sim) as gw:
        await gw.identify()
        async with http.post(
            f"{sim.control_url}/guilds/{guild.id}/members",
            json={"count": 3, "interval_ms": 10, "account_age_days": 2, "wait": True},
        ) as response:
            joined = (await response.json())["joined"]
        adds = [await gw.recv_event("GUILD_MEMBER_ADD") for _ in range(3)]
    assert [a["d"]["user"]["id"] for a in adds] == joined
    assert all(a["d"]["guild_id"] == str(guild.id) for a in adds)
    for user_id in joined:
        age = datetime.now(UTC) - Snowflake(user_id).created_at
        assert 1.9 < age.total_seconds() / 86400 < 2.1
    async with http.get(f"{sim.control_url}/channels/{guild.system_channel_id}/messages") as r:
        assert [m["type"] for m in await r.json()] == [7, 7, 7]  # Discord's join messages


async def test_background_joins_are_accepted_at_once(sim, http):
    guild = _first_guild(sim)
    async with http.post(
        f"{sim.control_url}/guilds/{guild.id}/members", json={"count": 2, "interval_ms": 5}
    ) as response:
        assert response.status == 202


async def test_control_api_rejects_bad_input_with_a_reason(sim, http):
    guild = _first_guild(sim)
    async with http.post(
        f"{sim.control_url}/guilds/{guild.id}/members", json={"count": "many"}
    ) as response:
        assert response.status == 400 and "count" in (await response.json())["message"]
    async with http.post(f"{sim.control_url}/shards/0/close?code=abc") as response:
        assert response.status == 400


async def test_intents_filter_dispatches(sim, http, gateway):
    guild = _first_guild(sim)
    async with gateway(sim) as no_members, gateway(sim) as members:
        await no_members.identify(intents=int(Intents.GUILDS | Intents.GUILD_MESSAGES))
        await members.identify(intents=int(Intents.GUILDS | Intents.GUILD_MEMBERS))
        async with http.post(
            f"{sim.control_url}/guilds/{guild.id}/members", json={"count": 1}
        ) as response:
            assert response.status == 200
        assert (await members.recv_event("GUILD_MEMBER_ADD"))["d"]["guild_id"] == str(guild.id)
        # The join message is a MESSAGE_CREATE: only the GUILD_MESSAGES session gets it.
        received = await no_members.recv_event("MESSAGE_CREATE")
        assert received["d"]["type"] == 7
        await members.send({"op": 1, "d": None})
        assert (await members.recv())["op"] == 11
    assert sim.stats.events["GUILD_MEMBER_ADD"] == 1


async def test_message_content_gates_content_except_own_messages_and_mentions(sim, http, gateway):
    guild = _first_guild(sim)
    bot_id = sim.world.bot.id
    async with gateway(sim) as gw:
        await gw.identify(intents=NO_CONTENT)
        await _say(http, sim, "secret words")
        hidden = await gw.recv_event("MESSAGE_CREATE")
        await _say(http, sim, f"hey <@{bot_id}> look")
        mention = await gw.recv_event("MESSAGE_CREATE")
        async with http.post(
            f"{sim.api_url}/channels/{guild.system_channel_id}/messages",
            json={"content": "bot says", "embeds": [{"title": "t"}]},
            headers=AUTH,
        ) as response:
            assert response.status == 200
        own = await gw.recv_event("MESSAGE_CREATE")
    assert hidden["d"]["content"] == "" and hidden["d"]["embeds"] == []
    assert mention["d"]["content"] == f"hey <@{bot_id}> look"
    assert own["d"]["content"] == "bot says" and own["d"]["embeds"] == [
        {"type": "rich", "title": "t"}
    ]


@pytest.mark.parametrize("compress", ["zlib-stream", "zstd-stream"])
async def test_transport_compression_streams_decode(sim, http, gateway, compress):
    async with gateway(sim, compress=compress) as gw:
        ready = await gw.identify()
        for n in range(3):
            await _say(http, sim, f"compressed {n}")
        events = [await gw.recv_event("MESSAGE_CREATE") for _ in range(3)]
    assert ready["t"] == "READY"
    assert [e["d"]["content"] for e in events] == ["compressed 0", "compressed 1", "compressed 2"]
    assert all(f.type is aiohttp.WSMsgType.BINARY for f in gw.frames)
    if compress == "zlib-stream":
        assert all(f.data.endswith(b"\x00\x00\xff\xff") for f in gw.frames)
        # One shared context: a later frame cannot be inflated on its own.
        with pytest.raises(zlib.error):
            zlib.decompressobj().decompress(gw.frames[-1].data)
            raise zlib.error("a fresh context decoded a mid-stream frame")


async def test_flood_sends_unique_realistic_events_that_replay_on_resume(sim, http, gateway):
    async with gateway(sim, compress="zlib-stream") as gw:
        ready = await gw.identify()
        session_id = ready["d"]["session_id"]
        for _ in ready["d"]["guilds"]:
            await gw.recv_event("GUILD_CREATE")
        start = gw.seq
        async with http.post(
            f"{sim.control_url}/flood", json={"event": "MESSAGE_CREATE", "count": 300, "wait": True}
        ) as response:
            result = await response.json()
        events = [await gw.recv() for _ in range(300)]
        await gw.ws.close(code=4900)
    assert result["sent"] == 300 and result["sessions"] == 1
    assert [e["s"] for e in events] == list(range(start + 1, start + 301))
    assert len({e["d"]["id"] for e in events}) == 300
    assert all(e["t"] == "MESSAGE_CREATE" and e["d"]["content"] for e in events)
    sizes = [len(f.data) for f in gw.frames]
    assert sizes and all(s < 1024 for s in sizes[-300:])  # compressed well below the raw size
    async with gateway(sim) as again:
        await again.resume(session_id, start + 100)
        replay = [await again.recv() for _ in range(201)]
    assert [p["s"] for p in replay[:200]] == list(range(start + 101, start + 301))
    assert [p["d"]["id"] for p in replay[:200]] == [e["d"]["id"] for e in events[100:]]
    assert replay[-1]["t"] == "RESUMED"


async def test_flood_without_a_live_session_is_404(sim, http):
    async with http.post(f"{sim.control_url}/flood", json={"count": 10}) as response:
        assert response.status == 404


async def test_stats_and_reset(sim, http, gateway):
    async with gateway(sim) as gw:
        await gw.identify()
        async with http.get(f"{sim.control_url}/stats") as response:
            stats = await response.json()
        assert stats["identifies"] == 1 and stats["connections"]["open"] == 1
        assert stats["dispatches"]["0"] == 1 + len(sim.world.guilds)
        async with http.post(f"{sim.control_url}/reset-stats") as response:
            reset = await response.json()
    assert reset["identifies"] == 0 and reset["dispatches_total"] == 0
    assert reset["connections"]["open"] == 1


async def test_ui_page_is_served(sim, http):
    async with http.get(sim.base_url + "/") as response:
        page = await response.text()
    assert response.status == 200 and "/_sim/channels/" in page and "<script>" in page
