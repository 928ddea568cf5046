"""The bot's presence end to end: `[presence]` in IDENTIFY, and op 3 from a worker via RabbitMQ."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from gateway_testkit import (
    Control,
    gateway_config,
    running_gateway,
    running_simulator,
    wait_ready,
)

from spectacles.broker import BrokerSettings, GatewayCommands, Publisher
from spectacles.models import Activity, PresenceUpdate


async def _shard_session(control: Control, shard_id: int = 0) -> dict[str, Any]:
    sessions = await control.get("/sessions")
    (session,) = [s for s in sessions if s["shard"][0] == shard_id and s["connected"]]
    return dict(session)


async def test_configured_presence_is_sent_with_identify(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    presence = {"status": "dnd", "activity_name": "the raid queue", "activity_type": 3}
    async with (
        running_simulator() as sim,
        running_gateway(gateway_config(sim, amqp_url, group, presence=presence), group) as service,
    ):
        await wait_ready(service)
        session = await _shard_session(Control(http, sim.base_url))
    assert session["presence"] == {
        "since": None,
        "activities": [{"name": "the raid queue", "type": 3}],
        "status": "dnd",
        "afk": False,
    }
    assert session["presence_updates"] == 0


async def test_worker_presence_command_reaches_the_shard_session(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    update = PresenceUpdate(
        since=None, activities=[Activity(name="members join", type=3)], status="idle", afk=True
    )
    async with (
        running_simulator() as sim,
        running_gateway(gateway_config(sim, amqp_url, group), group) as service,
    ):
        await wait_ready(service)
        control = Control(http, sim.base_url)
        before = await _shard_session(control)
        publisher = await Publisher.connect(
            BrokerSettings(amqp_url=amqp_url, group=group), connection_name=f"{group}-worker"
        )
        try:
            await GatewayCommands(publisher, group).send(0, 3, update)
        finally:
            await publisher.close()
        session = before
        for _ in range(250):  # the relay forwards asynchronously; bounded at ~5 s
            session = await _shard_session(control)
            if session["presence_updates"]:
                break
            await asyncio.sleep(0.02)
    assert before["presence"]["status"] == "online"  # the default `[presence]`
    assert session["session_id"] == before["session_id"]
    assert session["presence_updates"] == 1
    assert session["presence"] == {
        "since": None,
        "activities": [{"name": "members join", "type": 3}],
        "status": "idle",
        "afk": True,
    }
