"""REST routes: auth, validation, unknown ids, rate limits, and the dispatch each action fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spectacles.simulator import RouteLimit

TOKEN = "test-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}
MESSAGES = "POST /channels/{channel_id}/messages"


def _first_guild(sim):
    return next(iter(sim.world.guilds.values()))


def _human(guild):
    return next(m for m in guild.members.values() if not m.user.bot and m.user.id != guild.owner_id)


async def test_missing_or_wrong_authorization_gets_401_json(sim, http):
    for headers in ({}, {"Authorization": "Bot wrong"}, {"Authorization": TOKEN}):
        async with http.get(sim.api_url + "/users/@me", headers=headers) as response:
            assert response.status == 401
            assert await response.json() == {"message": "401: Unauthorized", "code": 0}
    async with http.get(sim.api_url + "/gateway") as response:
        assert response.status == 200
        assert (await response.json())["url"] == sim.gateway_url


async def test_identity_routes(sim, http):
    async with http.get(sim.api_url + "/users/@me", headers=AUTH) as response:
        me = await response.json()
    async with http.get(sim.api_url + "/oauth2/applications/@me", headers=AUTH) as response:
        app = await response.json()
    assert me["id"] == str(sim.world.bot.id) and me["bot"] is True
    assert app["id"] == str(sim.world.application_id)


async def test_unknown_ids_get_discord_error_codes(sim, http):
    guild = _first_guild(sim)
    cases = {
        "/channels/1": 10003,
        "/guilds/1": 10004,
        f"/guilds/{guild.id}/members/1": 10007,
        "/users/1": 10013,
    }
    for path, code in cases.items():
        async with http.get(sim.api_url + path, headers=AUTH) as response:
            assert response.status == 404, path
            assert (await response.json())["code"] == code, path
    async with http.put(sim.api_url + f"/guilds/{guild.id}/bans/1", headers=AUTH) as response:
        assert (response.status, (await response.json())["code"]) == (404, 10013)


async def test_message_validation(sim, http):
    channel = _first_guild(sim).system_channel_id
    url = f"{sim.api_url}/channels/{channel}/messages"
    async with http.post(url, json={"content": ""}, headers=AUTH) as response:
        assert (response.status, (await response.json())["code"]) == (400, 50006)
    async with http.post(url, json={"content": "x" * 2001}, headers=AUTH) as response:
        body = await response.json()
        assert (response.status, body["code"]) == (400, 50035)
        assert "content" in body["errors"]
    async with http.post(url, data=b"{oops", headers=AUTH) as response:
        assert (response.status, (await response.json())["code"]) == (400, 50109)
    async with http.post(url, json={"content": "x" * 2000}, headers=AUTH) as response:
        assert response.status == 200


async def test_create_message_returns_it_fires_message_create_and_is_listed(sim, http, gateway):
    guild = _first_guild(sim)
    channel = guild.system_channel_id
    async with gateway(sim) as gw:
        await gw.identify()
        async with http.post(
            f"{sim.api_url}/channels/{channel}/messages",
            json={"content": "Pong!", "nonce": "42"},
            headers=AUTH,
        ) as response:
            created = await response.json()
        event = await gw.recv_event("MESSAGE_CREATE")
    assert created["content"] == "Pong!" and created["author"]["id"] == str(sim.world.bot.id)
    assert event["d"]["id"] == created["id"] and event["d"]["guild_id"] == str(guild.id)
    async with http.get(f"{sim.control_url}/channels/{channel}/messages") as response:
        listed = await response.json()
    assert [m["id"] for m in listed][-1] == created["id"]


async def test_reply_references_the_message(sim, http):
    guild = _first_guild(sim)
    channel = guild.system_channel_id
    async with http.post(
        f"{sim.control_url}/guilds/{guild.id}/channels/{channel}/messages",
        json={"content": "!ping"},
    ) as response:
        original = await response.json()
    body = {"content": "Pong!", "message_reference": {"message_id": original["id"]}}
    async with http.post(
        f"{sim.api_url}/channels/{channel}/messages", json=body, headers=AUTH
    ) as r:
        reply = await r.json()
    assert reply["type"] == 19 and reply["message_reference"]["message_id"] == original["id"]
    bad = {"content": "x", "message_reference": {"message_id": "1"}}
    async with http.post(f"{sim.api_url}/channels/{channel}/messages", json=bad, headers=AUTH) as r:
        assert (r.status, (await r.json())["code"]) == (400, 50035)


async def test_moderation_actions_fire_their_dispatches(sim, http, gateway):
    guild = _first_guild(sim)
    victims = [
        m.user.id for m in guild.members.values() if not m.user.bot and m.user.id != guild.owner_id
    ]
    until = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    base = f"{sim.api_url}/guilds/{guild.id}"
    async with gateway(sim) as gw:
        await gw.identify()
        async with http.patch(
            f"{base}/members/{victims[0]}",
            json={"communication_disabled_until": until},
            headers=AUTH,
        ) as response:
            assert response.status == 200
            assert (await response.json())["communication_disabled_until"] is not None
        update = await gw.recv_event("GUILD_MEMBER_UPDATE")
        async with http.delete(f"{base}/members/{victims[1]}", headers=AUTH) as response:
            assert response.status == 204
        removed = await gw.recv_event("GUILD_MEMBER_REMOVE")
        async with http.put(
            f"{base}/bans/{victims[2]}",
            json={"delete_message_seconds": 3600},
            headers={**AUTH, "X-Audit-Log-Reason": "raid"},
        ) as response:
            assert response.status == 204
        banned = await gw.recv_event("GUILD_BAN_ADD")
        async with http.patch(base, json={"verification_level": 3}, headers=AUTH) as response:
            assert (await response.json())["verification_level"] == 3
        updated = await gw.recv_event("GUILD_UPDATE")
    assert update["d"]["user"]["id"] == str(victims[0])
    assert removed["d"]["user"]["id"] == str(victims[1])
    assert banned["d"] == {"guild_id": str(guild.id), "user": banned["d"]["user"]}
    assert banned["d"]["user"]["id"] == str(victims[2])
    assert updated["d"]["verification_level"] == 3
    async with http.get(f"{sim.control_url}/guilds/{guild.id}") as response:
        detail = await response.json()
    assert [t["user_id"] for t in detail["timeouts"]] == [str(victims[0])]
    assert detail["bans"][0]["user_id"] == str(victims[2]) and detail["bans"][0]["reason"] == "raid"
    member_ids = {m["id"] for m in detail["members"]}
    assert str(victims[1]) not in member_ids and str(victims[2]) not in member_ids
    assert detail["verification_level"] == 3


async def test_moderation_validation(sim, http):
    guild = _first_guild(sim)
    user = _human(guild).user.id
    too_far = (datetime.now(UTC) + timedelta(days=29)).isoformat()
    base = f"{sim.api_url}/guilds/{guild.id}"
    async with http.patch(
        f"{base}/members/{user}", json={"communication_disabled_until": too_far}, headers=AUTH
    ) as response:
        assert (response.status, (await response.json())["code"]) == (400, 50035)
    async with http.patch(base, json={"verification_level": 9}, headers=AUTH) as response:
        assert (response.status, (await response.json())["code"]) == (400, 50035)
    async with http.put(
        f"{base}/bans/{user}", json={"delete_message_seconds": 604801}, headers=AUTH
    ) as response:
        assert (response.status, (await response.json())["code"]) == (400, 50035)
    async with http.delete(f"{base}/members/{guild.owner_id}", headers=AUTH) as response:
        assert (response.status, (await response.json())["code"]) == (403, 50013)


async def test_actions_dispatch_to_the_shard_that_owns_the_guild(make_sim, http, gateway):
    sim = await make_sim(guilds=2, shards=2)
    guild = next(g for g in sim.world.guilds.values() if (g.id >> 22) % 2 == 1)
    async with gateway(sim) as zero, gateway(sim) as one:
        ready = await zero.identify(shard=[0, 2])
        for _ in ready["d"]["guilds"]:
            await zero.recv_event("GUILD_CREATE")
        await one.identify(shard=[1, 2])
        async with http.post(
            f"{sim.api_url}/channels/{guild.system_channel_id}/messages",
            json={"content": "to shard one"},
            headers=AUTH,
        ) as response:
            assert response.status == 200
        event = await one.recv_event("MESSAGE_CREATE")
        await zero.send({"op": 1, "d": None})
        assert (await zero.recv())["op"] == 11
    assert event["d"]["content"] == "to shard one"
    assert dict(sim.stats.dispatches)[1] >= 1


async def test_rate_limit_headers_and_429_per_major_parameter(make_sim, http):
    sim = await make_sim(route_limits={MESSAGES: RouteLimit(2, 30.0)})
    first, second = list(sim.world.guilds.values())[:2]
    url = f"{sim.api_url}/channels/{first.system_channel_id}/messages"
    headers = []
    for _ in range(2):
        async with http.post(url, json={"content": "x"}, headers=AUTH) as response:
            assert response.status == 200
            headers.append(response.headers)
    assert [h["X-RateLimit-Remaining"] for h in headers] == ["1", "0"]
    assert headers[0]["X-RateLimit-Limit"] == "2" and headers[0]["X-RateLimit-Bucket"]
    assert 29 < float(headers[0]["X-RateLimit-Reset-After"]) <= 30
    assert float(headers[0]["X-RateLimit-Reset"]) > datetime.now(UTC).timestamp()
    async with http.post(url, json={"content": "x"}, headers=AUTH) as response:
        body = await response.json()
        limited = response.headers
        assert response.status == 429
    assert body["message"] == "You are being rate limited." and body["global"] is False
    assert 29 < body["retry_after"] <= 30 and int(limited["Retry-After"]) == 30
    assert limited["X-RateLimit-Scope"] == "user" and "X-RateLimit-Global" not in limited
    # Another channel (another major parameter) has its own window in the same bucket.
    other = f"{sim.api_url}/channels/{second.system_channel_id}/messages"
    async with http.post(other, json={"content": "x"}, headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["X-RateLimit-Bucket"] == headers[0]["X-RateLimit-Bucket"]
    assert sim.stats.rate_limited == 1
    async with http.get(f"{sim.control_url}/stats") as response:
        assert (await response.json())["rate_limited"] == 1


async def test_global_rate_limit(make_sim, http):
    sim = await make_sim(global_rate_limit=3)
    statuses, limited = [], None
    for _ in range(5):
        async with http.get(sim.api_url + "/users/@me", headers=AUTH) as response:
            statuses.append(response.status)
            if response.status == 429:
                limited = (response.headers, await response.json())
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    assert limited is not None
    headers, body = limited
    assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
    assert body["global"] is True and "Retry-After" in headers


async def test_rest_log_records_every_call(sim, http):
    guild = _first_guild(sim)
    async with http.get(f"{sim.api_url}/guilds/{guild.id}", headers=AUTH) as response:
        assert response.status == 200
    async with http.get(f"{sim.api_url}/nope", headers=AUTH) as response:
        assert response.status == 404
    async with http.get(f"{sim.control_url}/rest-log") as response:
        log = await response.json()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", f"/guilds/{guild.id}", 200),
        ("GET", "/nope", 404),
    ]
