"""The gateway as a real process: SIGKILL and restart, SIGTERM, fatal exits, token never logged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from gateway_testkit import (
    ALL_DISPATCHES,
    TOKEN,
    Control,
    amqp_channel,
    assert_every_seq_received,
    event_sink,
    refused,
    running_simulator,
    wait_all_relayed,
    wait_until,
)

from spectacles.gateway.session_store import session_queue_name
from spectacles.simulator import Simulator

# Also run against RabbitMQ 4 (scripts/rabbit4.sh).
pytestmark = pytest.mark.rmq4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(path: Path, store: str) -> None:
    events = ", ".join(f'"{e}"' for e in ALL_DISPATCHES)
    path.write_text(
        f"""
events = [{events}]
intents = ["GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]

[gateway]
identify_interval = 0.2
invalid_session_delay = [0.05, 0.1]
backoff_base = 0.05
backoff_max = 0.5

[session_store]
type = "{store}"
save_interval = 0.2
"""
    )


class GatewayProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.returncode is not None:
                raise AssertionError(f"gateway exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise AssertionError(f"gateway not ready: {self.log.read_text()[-2000:]}")


@contextlib.asynccontextmanager
async def gateway_process(
    sim: Simulator, amqp_url: str, group: str, tmp_path: Path, store: str, run: int = 0
) -> AsyncIterator[GatewayProcess]:
    config = tmp_path / "gateway.toml"
    write_config(config, store)
    port = free_port()
    log = tmp_path / f"gateway-{run}.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_URL": sim.api_url,
        "AMQP_URL": amqp_url,
        "BROKER_GROUP": group,
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
    }
    config_text = config.read_text() + f'\n[metrics]\naddress = "127.0.0.1:{port}"\n'
    config.write_text(config_text)
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "spectacles.gateway",
            "--config",
            str(config),
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        yield GatewayProcess(process, port, log)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)


async def test_gateway_killed_mid_flood_resumes_and_loses_nothing(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    count = 8000
    async with running_simulator() as sim, event_sink(amqp_url, group, ALL_DISPATCHES) as sink:
        control = Control(http, sim.base_url)
        async with gateway_process(sim, amqp_url, group, tmp_path, "amqp") as first:
            await first.wait_ready(http)
            await _wait_session_saved(amqp_url, group)
            flood = asyncio.create_task(
                control.post("/flood", {"count": count, "rate": 4000, "wait": True})
            )
            # Events flow; the kill comes after what the simulator sent, not what the test's
            # consumer got: on a busy machine that lags seconds behind, past the end of the flood.
            await wait_until(
                lambda: sim.stats.flood_sent > 1500 and bool(sink.of("MESSAGE_CREATE")), timeout=20
            )
            first.process.send_signal(signal.SIGKILL)
            await first.process.wait()
        relayed_before_restart = len(sink.ids("MESSAGE_CREATE"))
        async with gateway_process(sim, amqp_url, group, tmp_path, "amqp", run=1) as second:
            await second.wait_ready(http)
            flooded = await asyncio.wait_for(flood, 60)
            session_id, last_seq = await wait_all_relayed(control, sink)
            stats = await control.stats()
            second.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.process.wait(), 15) == 0
            closes = (await control.stats())["closes"]
    assert relayed_before_restart < count, "the kill must happen mid-flood"
    # The flood stopped with the killed gateway's connection: the rest came by RESUME's replay.
    assert flooded["sent"] < count, "the kill must happen mid-flood"
    assert stats["identifies"] == 1, "the restarted gateway must RESUME, not IDENTIFY"
    assert stats["resumes"] >= 1
    assert_every_seq_received(sink, session_id, last_seq)
    assert closes.get("4900") == 1  # SIGTERM closed with a resumable code
    assert "1000" not in closes and "1001" not in closes


async def _wait_session_saved(amqp_url: str, group: str) -> None:
    name = session_queue_name(group, 0)
    async with amqp_channel(amqp_url) as channel:
        for _ in range(100):
            try:
                queue = await channel.declare_queue(name, passive=True)
            except Exception as exc:
                if not refused(exc, "NOT_FOUND"):
                    raise
                channel = await channel.connection.channel()  # a refusal closes the channel
            else:
                if queue.declaration_result.message_count:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError("the gateway never saved its session")


async def test_gateway_fatal_close_logs_cause_and_fix_and_never_the_token(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with (
        running_simulator() as sim,
        gateway_process(sim, amqp_url, group, tmp_path, "none") as gateway,
    ):
        await gateway.wait_ready(http)
        await Control(http, sim.base_url).post("/shards/0/close?code=4004")
        exit_code = await asyncio.wait_for(gateway.process.wait(), 15)
    output = gateway.log.read_text()
    assert exit_code == 1
    fatal = [line for line in output.splitlines() if "AUTHENTICATION_FAILED" in line]
    assert len(fatal) == 1, output[-3000:]
    assert '"cause"' in fatal[0] and '"fix"' in fatal[0] and "DISCORD_TOKEN" in fatal[0]
    assert "no shard left running" in output
    assert TOKEN not in output
    assert "identified" in output  # the IDENTIFY (which carries the token) did happen


async def test_gateway_when_rabbitmq_unreachable_exits_1_before_connecting_discord(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    closed_port = free_port()
    async with running_simulator() as sim:
        unreachable = f"amqp://guest:guest@127.0.0.1:{closed_port}/"
        async with gateway_process(sim, unreachable, group, tmp_path, "none") as gateway:
            exit_code = await asyncio.wait_for(gateway.process.wait(), 30)
        stats = await Control(http, sim.base_url).stats()
    output = gateway.log.read_text()
    assert exit_code == 1
    assert "RabbitMQ is unreachable" in output and f"127.0.0.1:{closed_port}" in output
    assert stats["connections"]["total"] == 0  # no websocket was opened
    assert "guest:guest" not in output
