"""No secret anywhere it could be read: the whole stack runs with recognisable secrets, then every
log line, every settings repr and every dead-letter header is searched for them.

simulator -> `spectacles-gateway` -> RabbitMQ (a user of this test, with a recognisable password)
-> `spectacles-ping` + `spectacles-raid-guard` -> `spectacles-rest-proxy` (injecting the token,
guarded by REST_PROXY_AUTH) -> simulator, every part a real process logging at DEBUG. Faults on
the way: a malformed message (dead-lettered), every broker connection closed (reconnects), a
stranger and a wrong token at the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from stack_kit import (
    EVENTS,
    INTENTS,
    RABBITMQCTL,
    SimControl,
    base_env,
    eventually,
    free_port,
    replies_to,
    service_process,
    sim_config,
    write_gateway_toml,
)

from spectacles.broker.admin import BrokerAdmin, Received
from spectacles.broker.settings import BrokerSettings
from spectacles.gateway import GatewayConfig
from spectacles.gateway.config import load_config
from spectacles.rest.proxy import ProxySettings
from spectacles.simulator import Simulator
from spectacles.worker import WorkerSettings

SUFFIX = secrets.token_hex(4)
TOKEN = f"Tok3n-SecretScan-{SUFFIX}"
PASSWORD = f"Brok3rPw-SecretScan-{SUFFIX}"
PROXY_AUTH = f"Pr0xyAuth-SecretScan-{SUFFIX}"
SECRETS = (TOKEN, PASSWORD, PROXY_AUTH)


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run([*RABBITMQCTL, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"rabbitmqctl {args[0]}: {result.stderr}"
    return result.stdout


@pytest.fixture
async def broker_url(amqp_url: str, group: str) -> AsyncIterator[str]:
    """A RabbitMQ user of this test alone whose password is recognisable."""
    user = f"{group}-scan"
    parts = urlsplit(amqp_url)
    vhost = parts.path.lstrip("/") or "/"
    await asyncio.to_thread(rabbitmqctl, "add_user", user, PASSWORD)
    try:
        await asyncio.to_thread(rabbitmqctl, "set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        host = f"{parts.hostname}:{parts.port or 5672}"
        yield f"amqp://{user}:{PASSWORD}@{host}/{quote(vhost, safe='')}"
    finally:
        await asyncio.to_thread(rabbitmqctl, "delete_user", user)


async def close_connections_of(user: str) -> int:
    """Close every broker connection of ``user``, as a broker restart would."""
    listing = await asyncio.to_thread(
        rabbitmqctl, "list_connections", "-q", "--no-table-headers", "pid", "user"
    )
    pids = [line.split()[0] for line in listing.splitlines() if line.split()[1:] == [user]]
    for pid in pids:
        with contextlib.suppress(AssertionError):  # it may be gone already
            await asyncio.to_thread(rabbitmqctl, "close_connection", pid, "test: broker restart")
    return len(pids)


async def dead_letters(amqp_url: str, queue: str) -> list[Received]:
    async with await BrokerAdmin.connect(amqp_url) as admin:
        return await admin.drain(queue)


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret ({secret[:9]}...) appears in {where}"


async def test_no_token_or_password_in_any_log_repr_or_dead_letter(
    amqp_url: str, broker_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with Simulator(sim_config(token=TOKEN), host="127.0.0.1", port=0) as sim:
        control = SimControl(http, sim)
        proxy_port, ping_port, guard_port, gateway_port = (free_port() for _ in range(4))
        proxy_api = f"http://127.0.0.1:{proxy_port}/api/v10"
        common = {"LOG_LEVEL": "DEBUG", "REST_PROXY_AUTH": PROXY_AUTH}
        proxy_env = base_env(
            broker_url,
            group,
            **common,
            DISCORD_TOKEN=TOKEN,
            REST_PROXY_ADDRESS=f"127.0.0.1:{proxy_port}",
            DISCORD_API_URL=sim.api_url,
        )
        worker_env = base_env(
            broker_url, group, **common, DISCORD_TOKEN=TOKEN, DISCORD_API_URL=proxy_api
        )
        ping_env = {**worker_env, "METRICS_ADDRESS": f"127.0.0.1:{ping_port}"}
        guard_env = {
            **worker_env,
            "METRICS_ADDRESS": f"127.0.0.1:{guard_port}",
            "RAID_JOIN_THRESHOLD": "5",
            "RAID_COOLDOWN_SECONDS": "2",
        }
        gateway_env = base_env(
            broker_url,
            group,
            LOG_LEVEL="DEBUG",
            DISCORD_TOKEN=TOKEN,
            DISCORD_EVENTS=",".join(EVENTS),
            DISCORD_INTENTS=",".join(INTENTS),
            DISCORD_API_URL=sim.api_url,
        )
        toml = write_gateway_toml(tmp_path / "gateway.toml", gateway_port)
        async with (
            service_process("spectacles-rest-proxy", proxy_env, tmp_path, port=proxy_port) as rest,
            service_process("spectacles-ping", ping_env, tmp_path, port=ping_port) as ping,
            service_process("spectacles-raid-guard", guard_env, tmp_path, port=guard_port) as guard,
        ):
            await asyncio.gather(*(p.wait_ready(http) for p in (rest, ping, guard)))
            async with service_process(
                "spectacles-gateway",
                gateway_env,
                tmp_path,
                port=gateway_port,
                args=("--config", str(toml)),
            ) as gateway:
                await gateway.wait_ready(http, timeout=60)
                guild = await control.guild()
                guild_id, channel_id = guild["id"], guild["system_channel_id"]
                bot_id = await control.bot_id()

                async def pong() -> None:
                    said = await control.say(guild_id, channel_id, "!ping")
                    await eventually(
                        lambda: control.messages(channel_id),
                        lambda ms: bool(replies_to(ms, said["id"], bot_id)),
                        timeout=30,
                        what="a reply to !ping",
                    )

                await pong()
                await control.join(guild_id, 8, interval_ms=20, account_age_days=1)
                await eventually(
                    lambda: control.messages(guild["mod_log_channel_id"]),
                    lambda ms: any("Raid detected" in m["content"] for m in ms),
                    timeout=30,
                    what="a raid alert",
                )
                # A malformed message: dead-lettered with an x-error header.
                async with await BrokerAdmin.connect(amqp_url) as admin:
                    await admin.publish(
                        "", f"{group}.ping", b"\xff not json", type="MESSAGE_CREATE"
                    )
                # Strangers at the proxy: refused, and logged without secrets.
                for headers in ({}, {"X-Spectacles-Proxy-Auth": "guess", "Authorization": "Bot x"}):
                    async with http.get(f"{rest.url}/api/v10/users/@me", headers=headers) as r:
                        assert r.status == 401
                # Every broker connection of the stack dropped: all reconnect (and log it).
                assert await close_connections_of(f"{group}-scan") >= 3
                await pong()
                for process in (gateway, ping, guard, rest):
                    assert await process.terminate() == 0, process.tail()

        dead = await dead_letters(amqp_url, f"{group}.ping.dead")
        assert dead, "the malformed message was not dead-lettered"
        for message in dead:
            assert "x-error" in (message.headers or {})
            assert_no_secret("a dead-letter header", repr(message.headers))
            assert_no_secret("a dead letter", message.body.decode(errors="replace"))

        logs = sorted(tmp_path.glob("*.log"))
        assert len(logs) == 4
        for log in logs:
            text = log.read_text(errors="replace")
            assert text.strip(), f"{log.name} logged nothing"
            for number, line in enumerate(text.splitlines(), 1):
                assert_no_secret(f"{log.name} line {number}", line)

        reprs = {
            "ProxySettings": ProxySettings.from_env(proxy_env),
            "WorkerSettings": WorkerSettings.from_env(ping_env),
            "BrokerSettings": BrokerSettings(amqp_url=broker_url, group=group),
            "GatewayConfig": load_config(toml, gateway_env),
        }
        assert isinstance(reprs["GatewayConfig"], GatewayConfig)
        for name, value in reprs.items():
            assert_no_secret(f"repr({name})", repr(value))
            assert_no_secret(f"str({name})", str(value))
