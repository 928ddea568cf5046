"""Sessions, RESUME and replay, and the fault injection of the control API."""

from __future__ import annotations

import asyncio

import aiohttp

TOKEN = "test-token"


async def _post_user_message(http, sim, content="hi"):
    guild = next(iter(sim.world.guilds.values()))
    url = f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}/messages"
    async with http.post(url, json={"content": content}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _session(gw):
    ready = await gw.identify()
    for _ in ready["d"]["guilds"]:
        await gw.recv_event("GUILD_CREATE")
    return ready["d"]["session_id"]


async def test_resume_replays_missed_dispatches_in_order_then_resumed(sim, gateway, http):
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        await _post_user_message(http, sim, "seen")
        seen = await gw.recv_event("MESSAGE_CREATE")
        await gw.ws.close(code=4900)
    for text in ("missed 1", "missed 2"):
        await _post_user_message(http, sim, text)
    async with gateway(sim, path="/resume") as gw:
        await gw.resume(session_id, seen["s"])
        replayed = [await gw.recv() for _ in range(3)]
    assert [p["t"] for p in replayed] == ["MESSAGE_CREATE", "MESSAGE_CREATE", "RESUMED"]
    assert [p["d"].get("content") for p in replayed[:2]] == ["missed 1", "missed 2"]
    assert [p["s"] for p in replayed] == [seen["s"] + 1, seen["s"] + 2, seen["s"] + 3]
    assert sim.stats.resumes == 1


async def test_close_1000_by_the_client_ends_the_session(sim, gateway):
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        await gw.ws.close(code=1000)
    await asyncio.sleep(0.05)
    async with gateway(sim) as gw:
        await gw.resume(session_id, 1)
        refused = await gw.recv()
    assert (refused["op"], refused["d"]) == (9, False)


async def test_resume_of_an_unknown_session_gets_op9_false(sim, gateway):
    async with gateway(sim) as gw:
        await gw.resume("no-such-session", 3)
        refused = await gw.recv()
    assert (refused["op"], refused["d"]) == (9, False)


async def test_session_expires_after_its_ttl(make_sim, gateway):
    sim = await make_sim(session_ttl=0.2)
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        await gw.ws.close(code=4900)
    await asyncio.sleep(0.5)
    async with gateway(sim) as gw:
        await gw.resume(session_id, 1)
        refused = await gw.recv()
    assert (refused["op"], refused["d"]) == (9, False)


async def test_resume_with_a_seq_ahead_of_the_server_closes_4007(sim, gateway):
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        await gw.ws.close(code=4900)
    async with gateway(sim) as gw:
        await gw.resume(session_id, 999)
        assert await gw.expect_close() == 4007
    assert session_id not in sim.hub.sessions


async def test_resume_with_a_seq_older_than_the_buffer_closes_4007(make_sim, gateway, http):
    sim = await make_sim(replay_buffer_size=3)
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        await gw.ws.close(code=4900)
    for n in range(5):
        await _post_user_message(http, sim, f"m{n}")
    async with gateway(sim) as gw:
        await gw.resume(session_id, 1)
        assert await gw.expect_close() == 4007


async def test_injected_reconnect_sends_op7(sim, gateway, http):
    async with gateway(sim) as gw:
        await _session(gw)
        async with http.post(f"{sim.control_url}/shards/0/reconnect") as response:
            assert (await response.json())["connections"] == 1
        payload = await gw.recv()
    assert payload == {"t": None, "s": None, "op": 7, "d": None}


async def test_injected_invalid_session_resumable_keeps_the_session(sim, gateway, http):
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        async with http.post(f"{sim.control_url}/shards/0/invalidate?resumable=true") as response:
            assert response.status == 200
        payload = await gw.recv()
        await gw.ws.close(code=4900)
    assert (payload["op"], payload["d"]) == (9, True)
    async with gateway(sim) as gw:
        await gw.resume(session_id, 1)
        assert (await gw.recv_event("RESUMED"))["t"] == "RESUMED"


async def test_injected_invalid_session_not_resumable_ends_the_session(sim, gateway, http):
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        async with http.post(f"{sim.control_url}/shards/0/invalidate?resumable=false") as response:
            assert response.status == 200
        payload = await gw.recv()
        assert (payload["op"], payload["d"]) == (9, False)
        # The same connection may identify again.
        assert (await gw.identify())["t"] == "READY"
    assert session_id not in sim.hub.sessions


async def test_injected_close_code_reaches_the_client_and_keeps_resumable_sessions(
    sim, gateway, http
):
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        async with http.post(f"{sim.control_url}/shards/0/close?code=4321") as response:
            assert response.status == 200
        assert await gw.expect_close() == 4321
    async with gateway(sim) as gw:
        await gw.resume(session_id, 1)
        assert (await gw.recv_event("RESUMED"))["t"] == "RESUMED"


async def test_injected_close_1000_ends_the_session(sim, gateway, http):
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        async with http.post(f"{sim.control_url}/shards/0/close?code=1000") as response:
            assert response.status == 200
        assert await gw.expect_close() == 1000
    assert session_id not in sim.hub.sessions


async def test_injected_drop_cuts_tcp_without_a_close_frame_and_keeps_the_session(
    sim, gateway, http
):
    async with gateway(sim) as gw:
        session_id = await _session(gw)
        async with http.post(f"{sim.control_url}/shards/0/drop") as response:
            assert response.status == 200
        msg = await gw.ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        assert gw.ws.close_code != 1000 and not any(
            f.type is aiohttp.WSMsgType.CLOSE for f in gw.frames
        )
    async with gateway(sim) as gw:
        await gw.resume(session_id, 1)
        assert (await gw.recv_event("RESUMED"))["t"] == "RESUMED"


async def test_injected_stall_stops_heartbeat_acks(sim, gateway, http):
    async with gateway(sim) as gw:
        await _session(gw)
        async with http.post(f"{sim.control_url}/shards/0/stall") as response:
            assert response.status == 200
        await gw.send({"op": 1, "d": 1})
        try:
            payload = await gw.recv(timeout=0.5)
        except TimeoutError:
            payload = None
        assert payload is None
        async with http.post(f"{sim.control_url}/shards/0/stall?stalled=false") as response:
            assert response.status == 200
        await gw.send({"op": 1, "d": 1})
        assert (await gw.recv())["op"] == 11


async def test_fault_injection_on_a_shard_without_connections_is_404(sim, http):
    async with http.post(f"{sim.control_url}/shards/3/reconnect") as response:
        body = await response.json()
    assert response.status == 404 and "shard 3" in body["message"]


async def test_resume_moves_a_session_off_a_still_open_connection(sim, gateway):
    async with gateway(sim) as old:
        session_id = await _session(old)
        async with gateway(sim) as new:
            await new.resume(session_id, 1)
            assert (await new.recv_event("RESUMED"))["t"] == "RESUMED"
            assert await old.expect_close() == 4000
