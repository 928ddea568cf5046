"""A quiet shard's saved session stays resumable past the store's TTL (a real process, SIGKILL)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest
from gateway_testkit import (
    ALL_DISPATCHES,
    Control,
    amqp_channel,
    event_sink,
    refused,
    running_simulator,
    wait_until,
)
from process_kit import gateway_process, process_env

from spectacles.gateway.session import SessionState
from spectacles.gateway.session_store import session_queue_name

pytestmark = pytest.mark.rmq4  # also run against RabbitMQ 4 (make test-rmq4)

# Long enough to outlast a process start on a loaded machine (the downtime), short enough
# that the test can idle past it.
TTL = 9.0


async def saved_session(amqp_url: str, group: str) -> SessionState | None:
    """The session the store holds for shard 0 (peeked, left in place)."""
    async with amqp_channel(amqp_url) as channel:
        try:
            queue = await channel.declare_queue(session_queue_name(group, 0), passive=True)
        except Exception as exc:
            if refused(exc, "NOT_FOUND"):
                return None
            raise
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            return None
        await message.nack(requeue=True)
        return msgspec.json.decode(message.body, type=SessionState)


async def test_idle_shard_past_the_ttl_resumes_after_sigkill(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    tables = {"session_store": {"type": "amqp", "ttl": TTL, "save_interval": 0.2}}
    async with (
        running_simulator(session_ttl=120.0) as sim,
        event_sink(amqp_url, group, ALL_DISPATCHES) as sink,
    ):
        control = Control(http, sim.base_url)
        env = process_env(sim.api_url, amqp_url, group)
        async with gateway_process(tmp_path, env, "first", tables) as first:
            await first.wait_ready(http)
            first_save: list[SessionState] = []

            async def saved() -> bool:
                state = await saved_session(amqp_url, group)
                if state is not None and not first_save:
                    first_save.append(state)
                return state is not None

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not await saved():
                assert loop.time() < deadline, "the session was never saved"
                await asyncio.sleep(0.1)
            # Idle (no dispatch, so the same session_id and seq) past the TTL of the first save.
            idle_until = first_save[0].saved_at + TTL + 1.0
            await asyncio.sleep(max(0.0, idle_until - time.time()))
            first.process.send_signal(signal.SIGKILL)
            await first.process.wait()
        guild = (await control.get("/guilds"))[0]
        channel = guild["channels"][0]
        channel_id = channel["id"] if isinstance(channel, dict) else channel
        posted = await control.post(
            f"/guilds/{guild['id']}/channels/{channel_id}/messages", {"content": "while down"}
        )
        async with gateway_process(tmp_path, env, "second", tables) as second:
            await second.wait_ready(http)
            await wait_until(
                lambda: any(b'"while down"' in m.body for m in sink.of("MESSAGE_CREATE")),
                timeout=20,
                what="the message sent during the downtime",
            )
            stats = await control.stats()
    assert posted
    assert stats["identifies"] == 1, "the restart must RESUME the idle session, not IDENTIFY"
    assert stats["resumes"] == 1
