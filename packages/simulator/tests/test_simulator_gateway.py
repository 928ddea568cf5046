"""Gateway behaviour, one test per row of discord-protocol.md section 10 (connection part)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from spectacles.models import Intents

TOKEN = "test-token"
INTENTS = 1 | 2 | 4 | 512 | 32768


async def test_hello_arrives_at_once_with_the_configured_interval(make_sim, gateway):
    sim = await make_sim(heartbeat_interval_ms=12345)
    async with gateway(sim, hello=False) as gw:
        hello = await gw.recv(timeout=1.0)
    assert hello == {"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 12345}}


async def test_every_heartbeat_is_acked_even_before_identify(sim, gateway):
    async with gateway(sim) as gw:
        for seq in (None, None, None):
            await gw.send({"op": 1, "d": seq})
        acks = [await gw.recv() for _ in range(3)]
    assert [a["op"] for a in acks] == [11, 11, 11]


async def test_a_command_before_identify_closes_4003(sim, gateway):
    async with gateway(sim) as gw:
        await gw.send(
            {"op": 3, "d": {"since": None, "activities": [], "status": "online", "afk": False}}
        )
        assert await gw.expect_close() == 4003


async def test_wrong_token_closes_4004_before_any_other_check(sim, gateway):
    async with gateway(sim) as gw:
        # Bad intents and a bad shard too: the token is checked first.
        await gw.send({"op": 2, "d": {"token": "nope", "intents": 1 << 40, "shard": [5, 1]}})
        assert await gw.expect_close() == 4004


async def test_second_identify_closes_4005(sim, gateway):
    async with gateway(sim) as gw:
        ready = await gw.identify()
        assert ready["t"] == "READY"
        await gw.send({"op": 2, "d": {"token": TOKEN, "intents": INTENTS, "properties": {}}})
        assert await gw.expect_close() == 4005


async def test_undefined_intent_bits_close_4013_before_privilege_and_shard_checks(
    make_sim, gateway
):
    sim = await make_sim(privileged_intents=Intents(0))
    async with gateway(sim) as gw:
        await gw.send(
            {"op": 2, "d": {"token": TOKEN, "intents": (1 << 40) | 32768, "shard": [3, 1]}}
        )
        assert await gw.expect_close() == 4013


async def test_privileged_intents_not_enabled_close_4014_before_the_shard_check(make_sim, gateway):
    sim = await make_sim(privileged_intents=Intents.GUILD_MEMBERS)
    async with gateway(sim) as gw:
        await gw.send(
            {
                "op": 2,
                "d": {"token": TOKEN, "intents": int(Intents.MESSAGE_CONTENT), "shard": [3, 1]},
            }
        )
        assert await gw.expect_close() == 4014


async def test_shard_id_not_below_count_closes_4010(sim, gateway):
    async with gateway(sim) as gw:
        await gw.send({"op": 2, "d": {"token": TOKEN, "intents": INTENTS, "shard": [2, 2]}})
        assert await gw.expect_close() == 4010


async def test_ready_has_seq_1_session_and_one_guild_create_per_guild_of_the_shard(
    make_sim, gateway, http
):
    sim = await make_sim(guilds=5, shards=2)
    async with gateway(sim) as gw:
        ready = await gw.identify(shard=[1, 2])
        creates = [await gw.recv() for _ in range(len(ready["d"]["guilds"]))]
    d = ready["d"]
    assert (ready["op"], ready["t"], ready["s"]) == (0, "READY", 1)
    assert d["v"] == 10 and d["session_id"] and d["shard"] == [1, 2]
    assert d["resume_gateway_url"] == sim.resume_gateway_url
    assert d["user"]["id"] == str(sim.world.bot.id) and d["user"]["bot"] is True
    assert d["application"]["id"] == str(sim.world.application_id)
    expected = sorted(str(g.id) for g in sim.world.guilds.values() if (g.id >> 22) % 2 == 1)
    assert expected and sorted(g["id"] for g in d["guilds"]) == expected
    assert all(g["unavailable"] is True for g in d["guilds"])
    assert [c["t"] for c in creates] == ["GUILD_CREATE"] * len(expected)
    assert [c["s"] for c in creates] == list(range(2, 2 + len(expected)))
    assert sorted(c["d"]["id"] for c in creates) == expected
    assert all(c["d"]["channels"] and c["d"]["members"] for c in creates)


async def test_unknown_opcode_closes_4001(sim, gateway):
    async with gateway(sim) as gw:
        await gw.send({"op": 42, "d": None})
        assert await gw.expect_close() == 4001


async def test_invalid_json_closes_4002(sim, gateway):
    async with gateway(sim) as gw:
        await gw.ws.send_str("{not json")
        assert await gw.expect_close() == 4002


async def test_payload_over_4096_bytes_closes_4002(sim, gateway):
    async with gateway(sim) as gw:
        big = json.dumps({"op": 1, "d": None, "pad": "x" * 4100})
        await gw.ws.send_str(big)
        assert await gw.expect_close() == 4002


async def test_more_than_120_payloads_in_60_seconds_closes_4008(sim, gateway):
    async with gateway(sim) as gw:
        for _ in range(120):
            await gw.send({"op": 1, "d": None})
        for _ in range(120):
            assert (await gw.recv())["op"] == 11
        await gw.send({"op": 1, "d": None})
        assert await gw.expect_close() == 4008


async def test_missed_heartbeats_close_4000_and_keep_the_session(make_sim, gateway):
    sim = await make_sim(heartbeat_interval_ms=200, heartbeat_timeout_factor=1.5)
    async with gateway(sim) as gw:
        ready = await gw.identify()
        session_id = ready["d"]["session_id"]
        assert await gw.expect_close(timeout=3) == 4000
    async with gateway(sim, path="/resume") as gw:
        await gw.resume(session_id, 1)
        assert (await gw.recv_event("RESUMED"))["t"] == "RESUMED"


async def test_identify_buckets_allow_one_identify_per_bucket_per_interval(make_sim, gateway):
    sim = await make_sim(max_concurrency=2, identify_interval=0.6, shards=4, guilds=0)
    async with gateway(sim) as a, gateway(sim) as b, gateway(sim) as c:
        assert (await a.identify(shard=[0, 4]))["t"] == "READY"
        # Shard 2 shares bucket 0 (2 % 2): refused with op 9 false.
        refused = await b.identify(shard=[2, 4])
        assert (refused["op"], refused["d"]) == (9, False)
        # Shard 1 is bucket 1: allowed at the same moment.
        assert (await c.identify(shard=[1, 4]))["t"] == "READY"
        await asyncio.sleep(0.7)
        assert (await b.identify(shard=[2, 4]))["t"] == "READY"
    stats = sim.stats.to_json()
    assert stats["identifies"] == 3 and stats["invalid_sessions"] == 1


async def test_gateway_bot_counts_session_starts(make_sim, http, gateway):
    sim = await make_sim(session_start_total=5, max_concurrency=3, shards=2)
    headers = {"Authorization": f"Bot {TOKEN}"}
    async with http.get(sim.api_url + "/gateway/bot", headers=headers) as response:
        before = await response.json()
    async with gateway(sim) as gw:
        await gw.identify()
    async with http.get(sim.api_url + "/gateway/bot", headers=headers) as response:
        after = await response.json()
    assert before["url"] == sim.gateway_url and before["shards"] == 2
    assert before["session_start_limit"]["max_concurrency"] == 3
    assert (
        before["session_start_limit"]["remaining"],
        after["session_start_limit"]["remaining"],
    ) == (5, 4)
    assert 0 < after["session_start_limit"]["reset_after"] <= 86_400_000


async def test_exhausted_session_start_limit_refuses_identify(make_sim, gateway):
    sim = await make_sim(session_start_total=1)
    async with gateway(sim) as first, gateway(sim) as second:
        assert (await first.identify())["t"] == "READY"
        refused = await second.identify()
    assert (refused["op"], refused["d"]) == (9, False)


async def test_bad_api_version_closes_4012(sim, gateway):
    async with gateway(sim, query="v=9&encoding=json", hello=False) as gw:
        assert await gw.expect_close() == 4012


async def test_etf_encoding_is_refused_with_a_clear_http_400(sim, http):
    url = f"ws://127.0.0.1:{sim.port}/gateway?v=10&encoding=etf"
    try:
        await http.ws_connect(url)
    except aiohttp.WSServerHandshakeError as error:
        assert error.status == 400
    else:
        raise AssertionError("etf handshake should fail")
    async with http.get(f"http://127.0.0.1:{sim.port}/gateway?v=10&encoding=etf") as response:
        body = await response.json()
    assert response.status == 400 and "encoding=json" in body["message"]


async def test_events_without_a_guild_go_to_shard_0_only(make_sim, gateway):
    sim = await make_sim(guilds=0, shards=2)
    async with gateway(sim) as zero, gateway(sim) as one:
        await zero.identify(shard=[0, 2])
        await one.identify(shard=[1, 2])
        delivered = sim.hub.dispatch("USER_UPDATE", sim.world.bot.to_json(), None)
        assert delivered == 1
        assert (await zero.recv())["t"] == "USER_UPDATE"
        await one.send({"op": 1, "d": None})
        assert (await one.recv())["op"] == 11  # nothing was queued before the ACK
