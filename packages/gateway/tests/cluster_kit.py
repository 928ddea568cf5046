"""Several gateway processes in auto mode against one simulator: the gateway cluster tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from gateway_testkit import Control, amqp_channel, cleanup_broker
from process_kit import GatewayProcess, free_port, gateway_process, process_env, write_config

from spectacles.gateway.cluster import cluster_exchange_name
from spectacles.simulator import Simulator

SHARDS = 12
# Fast but proportioned like the defaults: a peer is gone after 3 missed announcements, a
# claimant waits the lease timeout plus a second.
CLUSTER = {
    "heartbeat_interval": 0.5,
    "member_timeout": 1.5,
    "lease_heartbeat": 1,
    "lease_timeout": 1.0,
    "settle": 1.0,
}


TABLES: Mapping[str, Mapping[str, Any]] = {
    "shards": {"count": SHARDS},
    "cluster": CLUSTER,
    "session_store": {"type": "amqp", "save_interval": 0.5},
}


class GatewayCluster:
    """Named gateway processes sharing `SHARDS` shards; started, stopped and killed at will."""

    def __init__(self, tmp_path: Path, sim: Simulator, amqp_url: str, group: str) -> None:
        self._tmp_path = tmp_path
        self._env = process_env(sim.api_url, amqp_url, group, DISCORD_SHARD_IDS="auto")
        self._stack = contextlib.AsyncExitStack()
        self.processes: dict[str, GatewayProcess] = {}
        self.control_url = sim.base_url

    async def __aenter__(self) -> GatewayCluster:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.__aexit__(None, None, None)

    async def add(self, name: str) -> GatewayProcess:
        process = await self._stack.enter_async_context(
            gateway_process(self._tmp_path, self._env, name, TABLES)
        )
        self.processes[name] = process
        return process

    async def status_cli(self, *args: str) -> tuple[int, str]:
        """`spectacles-gateway status ARGS` with the processes' config: exit code and stdout."""
        config = self._tmp_path / "gateway-status.toml"
        write_config(config, free_port(), TABLES)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "spectacles.gateway",
            "--config",
            str(config),
            "status",
            *args,
            env=self._env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return process.returncode, out.decode() + err.decode()

    async def start_settled(self, http: aiohttp.ClientSession, *names: str) -> None:
        """Start `names` together and wait until they settled."""
        for name in names:
            await self.add(name)
        await self.wait_settled(http, timeout=60)

    def pid(self, name: str) -> int:
        return self.processes[name].process.pid

    async def terminate(self, name: str) -> int:
        """SIGTERM (a rolling deploy): the process hands its shards over and exits."""
        process = self.processes.pop(name)
        process.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.process.wait(), 30)
        assert code == 0, process.output()[-3000:]
        return code

    def kill(self, name: str) -> None:
        """SIGKILL: no handover, its connections die with it."""
        process = self.processes.pop(name)
        os.kill(process.process.pid, signal.SIGKILL)

    async def views(self, http: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
        """Each live process' `/cluster`."""
        found: dict[str, dict[str, Any]] = {}
        for name, process in self.processes.items():
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(f"http://127.0.0.1:{process.port}/cluster") as response:
                    found[name] = await response.json()
        return found

    async def wait_settled(self, http: aiohttp.ClientSession, timeout: float = 30.0) -> float:
        """Until every live process sees all of them, each shard READY once, shares within 1.

        Returns the seconds it took.
        """
        started = time.monotonic()
        deadline = started + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.process.returncode is not None:
                    raise AssertionError(f"{name} exited: {process.output()[-3000:]}")
            views = await self.views(http)
            last = views
            if len(views) == len(self.processes) and all(
                _settled(view, len(self.processes)) for view in views.values()
            ):
                ready = [await p.readyz(http) for p in self.processes.values()]
                if all(r is not None and r[0] == 200 for r in ready):
                    return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise AssertionError(f"cluster never settled; last views: {last}")

    async def metric(self, http: aiohttp.ClientSession, sample: str) -> float:
        """`sample` (a metric name with its labels, as /metrics prints it) summed over processes."""
        total = 0.0
        for process in self.processes.values():
            async with http.get(f"http://127.0.0.1:{process.port}/metrics") as response:
                text = await response.text()
            for line in text.splitlines():
                if line.startswith(sample + " "):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    async def shares(self, http: aiohttp.ClientSession) -> dict[str, int]:
        """How many shards each live process owns (by its own account)."""
        views = await self.views(http)
        shares: dict[str, int] = {}
        for name, view in views.items():
            me = next(m for m in view["members"] if m.get("self"))
            shares[name] = len(me["shards"])
        return shares


def _settled(view: dict[str, Any], processes: int) -> bool:
    members = view.get("members", [])
    if view.get("starting") or len(members) != processes or view["unowned"]:
        return False
    counts = [len(m["shards"]) for m in members]
    states = [state for m in members for state in m["shards"].values()]
    return (
        sum(counts) == SHARDS
        and max(counts) - min(counts) <= 1
        and all(state == "ready" for state in states)
    )


async def live_sessions_per_shard(control: Control) -> Counter[int]:
    """How many connected sessions the simulator has for each shard."""
    sessions = await control.get("/sessions")
    return Counter(s["shard"][0] for s in sessions if s["connected"])


class Flood:
    """MESSAGE_CREATEs to every live session in rounds, until stopped; counts what was sent."""

    def __init__(self, control: Control, per_round: int = 50, rate: int = 250) -> None:
        # `rate` per session: 12 sessions at 250/s is 3,000 events/s, which this test process
        # (simulator and sink in one event loop) keeps up with on 2 cores.
        self._control = control
        self._per_round = per_round
        self._rate = rate
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Flood:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = await self._control.post(
                    "/flood", {"count": self._per_round, "rate": self._rate, "wait": True}
                )
            except AssertionError:  # no live session right now (all moving): try again
                await asyncio.sleep(0.05)
                continue
            self.sent += int(result["sent"])


@contextlib.asynccontextmanager
async def cluster_cleanup(amqp_url: str, group: str) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await cleanup_broker(amqp_url, group, shards=SHARDS)
        async with amqp_channel(amqp_url) as channel:
            await channel.exchange_delete(cluster_exchange_name(group, SHARDS))
