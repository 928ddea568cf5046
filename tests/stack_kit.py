"""Helpers for the whole-stack tests (tests/test_stack_*.py), no Docker needed.

The chain under test: the Discord simulator -> the gateway -> a real RabbitMQ -> the workers ->
the REST proxy -> back into the simulator, observed only through the simulator's control API.
Parts run in-process (their Python APIs) or as real processes (their console scripts). Every
wait is a poll with a deadline; a fixed sleep is never what a test asserts on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from spectacles.broker import BrokerError
from spectacles.broker.admin import BrokerAdmin
from spectacles.broker.delayed import delay_queue_name
from spectacles.gateway import GatewayConfig, GatewayService, parse_config
from spectacles.simulator import Simulator, SimulatorConfig

T = TypeVar("T")

TOKEN = "sim-token-Stack7kQ"
EVENTS = ["MESSAGE_CREATE", "GUILD_MEMBER_ADD"]
INTENTS = ["GUILDS", "GUILD_MEMBERS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]
# Fast protocol timings; heartbeats stay slow enough that a loaded CI machine never misses one.
GATEWAY_TIMINGS: dict[str, Any] = {
    "identify_interval": 0.2,
    "invalid_session_delay": [0.05, 0.1],
    "backoff_base": 0.05,
    "backoff_max": 0.5,
}
BIN = Path(sys.executable).parent  # the workspace venv's console scripts

#: How to run rabbitmqctl; e.g. RABBITMQCTL="docker compose exec -T rabbit rabbitmqctl" when the
#: broker under test runs in a container.
RABBITMQCTL = shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))


def sim_config(**overrides: Any) -> SimulatorConfig:
    base = SimulatorConfig(
        token=TOKEN,
        guilds=1,
        members_per_guild=5,
        identify_interval=0.2,
        heartbeat_interval_ms=5000,
        session_ttl=60.0,
    )
    return replace(base, **overrides)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- waiting --------------------------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float = 15.0,
    what: str,
    interval: float = 0.05,
) -> T:
    """Poll `probe` until `accept(value)`; the accepted value, or AssertionError with the last."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)


# -- the simulator's control API ------------------------------------------------------------


class SimControl:
    """What a test may do to, and see of, the simulated Discord."""

    def __init__(self, http: aiohttp.ClientSession, sim: Simulator) -> None:
        self.http = http
        self.sim = sim

    async def _request(self, method: str, path: str, **kw: Any) -> Any:
        async with self.http.request(method, self.sim.control_url + path, **kw) as response:
            assert response.status < 300, f"{method} {path}: {await response.text()}"
            return await response.json()

    async def guild(self, guild_id: str | None = None) -> dict[str, Any]:
        """One guild in full (the first one without an id)."""
        if guild_id is None:
            guild_id = (await self._request("GET", "/guilds"))[0]["id"]
        guild: dict[str, Any] = await self._request("GET", f"/guilds/{guild_id}")
        return guild

    async def say(
        self, guild_id: str, channel_id: str, content: str, author_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"content": content}
        if author_id is not None:
            body["author_id"] = author_id
        path = f"/guilds/{guild_id}/channels/{channel_id}/messages"
        message: dict[str, Any] = await self._request("POST", path, json=body)
        return message

    async def messages(self, channel_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request(
            "GET", f"/channels/{channel_id}/messages"
        )
        return result

    async def join(
        self, guild_id: str, count: int, *, interval_ms: int, account_age_days: float
    ) -> list[str]:
        body = {
            "count": count,
            "interval_ms": interval_ms,
            "account_age_days": account_age_days,
            "wait": True,
        }
        result = await self._request("POST", f"/guilds/{guild_id}/members", json=body)
        return list(result["joined"])

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self._request("GET", "/stats")
        return stats

    async def rest_log(self) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = await self._request("GET", "/rest-log")
        return log

    async def bot_id(self) -> str:
        headers = {"Authorization": f"Bot {self.sim.config.token}"}
        async with self.http.get(self.sim.api_url + "/users/@me", headers=headers) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["id"])


def replies_to(
    messages: list[dict[str, Any]], message_id: str, bot_id: str
) -> list[dict[str, Any]]:
    """The bot's messages that reference `message_id`."""
    return [
        m
        for m in messages
        if m["author"]["id"] == bot_id
        and (m.get("message_reference") or {}).get("message_id") == message_id
    ]


# -- metrics (the only way to know a worker has *handled*, not just received, an event) ------


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[tuple[str, frozenset[Any]], float]:
    """Every sample of a Prometheus endpoint, keyed by (name, labels)."""
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Mapping[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def handled_total(samples: Mapping[tuple[str, frozenset[Any]], float], worker: str) -> float:
    return sample(samples, "spectacles_worker_events_handled_total", worker=worker)


def proxied_total(samples: Mapping[tuple[str, frozenset[Any]], float], method: str) -> float:
    """Requests of `method` the REST proxy answered (every route, every status)."""
    return sample(samples, "spectacles_rest_proxy_requests_total", method=method)


# -- the gateway in-process -----------------------------------------------------------------


def gateway_config(
    sim: Simulator, amqp_url: str, group: str, *, store: str = "none"
) -> GatewayConfig:
    data: dict[str, Any] = {
        "token": TOKEN,
        "events": EVENTS,
        "intents": INTENTS,
        "broker": {"group": group},
        "amqp": {"url": amqp_url},
        "gateway": {"api_url": sim.api_url, **GATEWAY_TIMINGS},
        "metrics": {"address": "127.0.0.1:0"},
        "session_store": {"type": store, "save_interval": 0.2},
    }
    return parse_config(data, {})


@contextlib.asynccontextmanager
async def running_gateway(config: GatewayConfig, name: str) -> AsyncIterator[GatewayService]:
    service = GatewayService(config, connection_name=name)
    try:
        await service.start()
        await asyncio.gather(*(s.wait_ready(20) for s in service.shards.values()))
        yield service
    finally:
        await service.stop()


def write_gateway_toml(path: Path, metrics_port: int) -> Path:
    """What the environment cannot say (timings, metrics address, session store) for a process."""
    timings = "\n".join(
        f"{key} = {value!r}".replace("'", '"') for key, value in GATEWAY_TIMINGS.items()
    )
    path.write_text(
        f"""
[gateway]
{timings}

[metrics]
address = "127.0.0.1:{metrics_port}"

[session_store]
type = "amqp"
save_interval = 0.2
"""
    )
    return path


# -- real processes -------------------------------------------------------------------------


def base_env(amqp_url: str, group: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AMQP_URL": amqp_url,
        "BROKER_GROUP": group,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        **extra,
    }


class ServiceProcess:
    """One console script running as its own process, with its log and health port."""

    def __init__(
        self, name: str, process: asyncio.subprocess.Process, log: Path, port: int
    ) -> None:
        self.name = name
        self.process = process
        self.log = log
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        """Until `/readyz` answers 200; fails early, with the log, if the process exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.returncode is not None:
                raise AssertionError(
                    f"{self.name} exited {self.process.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    async def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, and the exit code once it stopped by itself."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.tail()}") from None

    async def kill(self) -> None:
        """SIGKILL: a crash, nothing runs on the way out."""
        if self.process.returncode is None:
            self.process.kill()
        await asyncio.wait_for(self.process.wait(), 10)


@contextlib.asynccontextmanager
async def service_process(
    script: str,
    env: Mapping[str, str],
    logs: Path,
    *,
    port: int,
    name: str | None = None,
    args: tuple[str, ...] = (),
) -> AsyncIterator[ServiceProcess]:
    """Start `script` from the venv; on exit it is killed if still running (never left behind)."""
    name = name or script
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(BIN / script),
            *args,
            env=dict(env),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            cwd=logs,
        )
    service = ServiceProcess(name, process, log, port)
    try:
        yield service
    finally:
        if process.returncode is None:  # a graceful stop first, a kill if it hangs
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
        await service.kill()
        print(f"----- {name} (exit {process.returncode}), last lines -----\n{service.tail()}")


# -- RabbitMQ cleanup -----------------------------------------------------------------------


def known_names(
    group: str, workers: tuple[str, ...], shards: int = 1
) -> tuple[list[str], list[str]]:
    """The queues and exchanges a stack of `group` declares (the wire contract's names)."""
    # raid-guard's restore orders wait a quarter of RAID_COOLDOWN_SECONDS (30 s in the demo)
    queues = [delay_queue_name(group, "raid-guard.restore", 30 / 4)]
    for worker in workers:
        queues += [f"{group}.{worker}", f"{group}.{worker}.dead"]
    for shard_id in range(shards):
        queues += [
            f"{group}.sessions.{shard_id}",
            f"{group}.commands.shard.{shard_id}",
            f"{group}.commands.shard.{shard_id}.dead",
        ]
    exchanges = [group, f"{group}.dlx", f"{group}.commands"]
    return queues, exchanges


async def _rabbitmqctl_names(kind: str, group: str) -> list[str]:
    """Names of `kind` (queues / exchanges) of `group` on the local broker, when we can ask it."""
    if shutil.which(RABBITMQCTL[0]) is None:
        return []
    process = await asyncio.create_subprocess_exec(
        *RABBITMQCTL,
        f"list_{kind}",
        "-q",
        "--no-table-headers",
        "name",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        return []
    names = out.decode().split()
    return [n for n in names if n == group or n.startswith(group + ".")]


async def delete_group(amqp_url: str, group: str, workers: tuple[str, ...]) -> None:
    """Delete every queue and exchange of `group`: the known names, then whatever is left."""
    queues, exchanges = known_names(group, workers)
    found_queues, found_exchanges = await asyncio.gather(
        _rabbitmqctl_names("queues", group), _rabbitmqctl_names("exchanges", group)
    )
    async with await BrokerAdmin.connect(amqp_url) as admin:
        # One refusal (say, an exclusive queue of a connection still closing) spares the rest.
        for queue in dict.fromkeys(queues + found_queues):
            with contextlib.suppress(BrokerError):
                await admin.delete_queue(queue)
        for exchange in dict.fromkeys(exchanges + found_exchanges):
            with contextlib.suppress(BrokerError):
                await admin.delete_exchange(exchange)
