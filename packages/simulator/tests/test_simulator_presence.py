"""The bot's presence: IDENTIFY's `presence` and op 3 are recorded per session, bad op 3 → 4002."""

from __future__ import annotations

from typing import Any

import pytest

TOKEN = "test-token"
GUILDS = 1


def _presence(status: str = "dnd", **overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "since": None,
        "activities": [{"name": "the simulator", "type": 3}],
        "status": status,
        "afk": False,
    }
    return {**d, **overrides}


async def _identify(gw: Any, presence: dict[str, Any] | None) -> dict[str, Any]:
    d: dict[str, Any] = {"token": TOKEN, "intents": GUILDS, "properties": {"os": "linux"}}
    if presence is not None:
        d["presence"] = presence
    await gw.send({"op": 2, "d": d})
    return await gw.recv_event("READY")


async def _handled(gw: Any) -> None:
    """Payloads are handled in order: once a heartbeat is ACKed, the ones before it were too."""
    await gw.send({"op": 1, "d": None})
    while (await gw.recv())["op"] != 11:
        pass


async def _session(http: Any, sim: Any, session_id: str) -> dict[str, Any]:
    async with http.get(f"{sim.control_url}/sessions") as response:
        assert response.status == 200, await response.text()
        sessions = await response.json()
    (session,) = [s for s in sessions if s["session_id"] == session_id]
    return dict(session)


async def test_identify_presence_then_op3_updates_are_recorded(sim, gateway, http):
    async with gateway(sim) as gw:
        ready = await _identify(gw, _presence("dnd"))
        session_id = ready["d"]["session_id"]
        first = await _session(http, sim, session_id)
        # discord.py's change_presence sends `since` as a float.
        update = _presence("idle", since=0.0, activities=[], afk=True)
        await gw.send({"op": 3, "d": update})
        await _handled(gw)
        second = await _session(http, sim, session_id)
    assert first["presence"] == _presence("dnd")
    assert first["presence_updates"] == 0
    assert second["presence"] == update
    assert second["presence_updates"] == 1


async def test_session_without_presence_reports_null(sim, gateway, http):
    async with gateway(sim) as gw:
        ready = await _identify(gw, None)
        session = await _session(http, sim, ready["d"]["session_id"])
    assert session["presence"] is None
    assert session["presence_updates"] == 0


async def test_identify_accepts_discordpy_shaped_presence(sim, gateway, http):
    legacy = {"status": None, "game": {"name": "x", "type": 0}, "since": 0, "afk": False}
    async with gateway(sim) as gw:
        ready = await _identify(gw, legacy)
        session = await _session(http, sim, ready["d"]["session_id"])
    assert session["presence"] == legacy


async def test_identify_with_an_unknown_status_closes_4002(sim, gateway):
    async with gateway(sim) as gw:
        await gw.send(
            {
                "op": 2,
                "d": {"token": TOKEN, "intents": GUILDS, "presence": _presence("busy")},
            }
        )
        assert await gw.expect_close() == 4002
    assert sim.stats.identifies == 0


@pytest.mark.parametrize(
    "d",
    [
        _presence("busy"),
        _presence(activities={"name": "x"}),
        _presence(since="now"),
        _presence(afk="no"),
        {"status": "online"},
        "online",
    ],
    ids=["status", "activities", "since", "afk", "missing-fields", "not-an-object"],
)
async def test_invalid_op3_closes_4002_and_keeps_the_previous_presence(sim, gateway, http, d):
    async with gateway(sim) as gw:
        ready = await _identify(gw, _presence("online"))
        await gw.send({"op": 3, "d": d})
        assert await gw.expect_close() == 4002
    session = await _session(http, sim, ready["d"]["session_id"])
    assert session["presence"] == _presence("online")
    assert session["presence_updates"] == 0
