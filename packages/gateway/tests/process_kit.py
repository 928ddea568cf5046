"""The gateway as a real process, with any environment and config tables: for restart tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from gateway_testkit import TOKEN, Control, amqp_channel

from spectacles.gateway.fatal_block import fatal_block_queue_name, token_fingerprint
from spectacles.gateway.identify_lock import quota_queue_name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # strings and lists of strings: TOML accepts JSON's spelling


def write_config(path: Path, port: int, tables: Mapping[str, Mapping[str, Any]]) -> None:
    defaults: dict[str, dict[str, Any]] = {
        "gateway": {
            "identify_interval": 0.2,
            "invalid_session_delay": [0.05, 0.1],
            "backoff_base": 0.05,
            "backoff_max": 0.5,
        },
        "session_store": {"type": "none", "save_interval": 0.2},
        "metrics": {"address": f"127.0.0.1:{port}"},
    }
    for table, values in tables.items():
        defaults[table] = {**defaults.get(table, {}), **values}
    lines = [
        'events = ["READY", "RESUMED", "GUILD_CREATE", "MESSAGE_CREATE"]',
        'intents = ["GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]',
    ]
    for table, values in defaults.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")


class GatewayProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def output(self) -> str:
        return self.log.read_text()

    async def readyz(self, http: aiohttp.ClientSession) -> tuple[int, dict[str, Any]] | None:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                return response.status, await response.json(content_type=None)
        return None

    async def wait_readyz(
        self, http: aiohttp.ClientSession, check: Any, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Until /readyz answers something `check(status, body)` accepts; that body."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.returncode is not None:
                raise AssertionError(f"gateway exited: {self.output()[-3000:]}")
            answer = await self.readyz(http)
            if answer is not None and check(*answer):
                return answer[1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"/readyz never matched: {self.output()[-3000:]}")

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        await self.wait_readyz(http, lambda status, _: status == 200, timeout)

    async def wait_blocked(
        self, http: aiohttp.ClientSession, timeout: float = 30.0
    ) -> dict[str, Any]:
        body = await self.wait_readyz(
            http, lambda status, body: status == 503 and "blocked" in body, timeout
        )
        blocked: dict[str, Any] = body["blocked"]
        return blocked


def process_env(api_url: str, amqp_url: str, group: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_URL": api_url,
        "AMQP_URL": amqp_url,
        "BROKER_GROUP": group,
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        **extra,
    }


@contextlib.asynccontextmanager
async def gateway_process(
    tmp_path: Path,
    env: Mapping[str, str],
    name: str,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    args: tuple[str, ...] = (),
) -> AsyncIterator[GatewayProcess]:
    port = free_port()
    config = tmp_path / f"gateway-{name}.toml"
    write_config(config, port, tables or {})
    log = tmp_path / f"gateway-{name}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "spectacles.gateway",
            "--config",
            str(config),
            *args,
            env=dict(env),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        yield GatewayProcess(process, port, log)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 15)


async def identify_attempts(control: Control) -> int:
    """Every IDENTIFY the simulator received, accepted or refused."""
    attempts: int = (await control.stats())["identify_attempts"]
    return attempts


async def delete_token_queues(amqp_url: str, group: str, *tokens: str) -> None:
    """Drop the fatal-block and quota queues a test's gateways declared for `tokens`."""
    async with amqp_channel(amqp_url) as channel:
        for token in tokens or (TOKEN,):
            fingerprint = token_fingerprint(token)
            await channel.queue_delete(fatal_block_queue_name(group, fingerprint))
            await channel.queue_delete(quota_queue_name(group, fingerprint))
