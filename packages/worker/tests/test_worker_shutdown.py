"""Prompt, bounded shutdown of a real worker process (Compose sends SIGTERM, SIGKILLs at 30 s).

The worker runs as PID 1 of its own PID namespace when ``unshare`` can make one (as in a
container, where a signal without a handler is ignored by PID 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from spectacles.broker.admin import BrokerAdmin
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings
from spectacles.worker import WorkerSettings
from spectacles.worker._settings import DEFAULT_DRAIN_TIMEOUT, WorkerConfigError

pytestmark = pytest.mark.rmq4

WORKER_SCRIPT = textwrap.dedent(
    """
    import asyncio, pathlib, sys
    from spectacles.worker import Worker

    marks = pathlib.Path(sys.argv[1])
    worker = Worker("shutdown")

    @worker.on("GUILD_MEMBER_ADD")
    async def on_join(member, ctx):
        marks.write_text("started")
        await asyncio.sleep(3600)  # stuck: only the drain timeout ends it

    worker.run()
    """
)

_UNSHARE = ["unshare", "--fork", "--pid", "--mount-proc"]


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*_UNSHARE, "true"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


class _WorkerProcess:
    """The worker script, as PID 1 of a new PID namespace where possible; signals reach it."""

    def __init__(self, marks: Path, env: dict[str, str]) -> None:
        self.as_pid_1 = _can_unshare()
        prefix = _UNSHARE if self.as_pid_1 else []
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-c", WORKER_SCRIPT, str(marks)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def worker_pid(self) -> int:
        if not self.as_pid_1:
            return self.process.pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            children = psutil.Process(self.process.pid).children()
            if children:
                return children[0].pid
            time.sleep(0.02)
        raise AssertionError("unshare did not start the worker")

    def terminate(self) -> float:
        os.kill(self.worker_pid(), signal.SIGTERM)
        return time.monotonic()

    async def wait(self, timeout: float) -> tuple[int, str]:
        _, stderr = await asyncio.to_thread(self.process.communicate, timeout=timeout)
        return self.process.returncode, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                for child in psutil.Process(self.process.pid).children(recursive=True):
                    child.kill()
            self.process.kill()
            self.process.wait(timeout=10)


def _env(amqp_url: str, group: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DISCORD_TOKEN": "test-token-not-used",
        "AMQP_URL": amqp_url,
        "BROKER_GROUP": group,
        "DISCORD_API_URL": "http://127.0.0.1:9/api/v10",
        "METRICS_ADDRESS": "127.0.0.1:0",
        "LOG_FORMAT": "json",
        **extra,
    }


@pytest.fixture
async def silent_amqp_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A TCP port that accepts connections and never answers: connecting to it hangs."""
    connected = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        connected.set()
        await reader.read()  # until the client goes away

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"amqp://guest:guest@127.0.0.1:{port}/", connected
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_sigterm_while_still_connecting_exits_at_once_with_0(
    silent_amqp_server: tuple[str, asyncio.Event], unique_name: str, tmp_path: Path
) -> None:
    url, connected = silent_amqp_server
    worker = _WorkerProcess(tmp_path / "marks", _env(url, unique_name))
    try:
        async with asyncio.timeout(30):
            await connected.wait()  # the worker is inside its AMQP handshake
        sent = worker.terminate()
        code, stderr = await worker.wait(timeout=30)
        elapsed = time.monotonic() - sent
        # Before: the stop waited for the 5 s connect timeout, then exited 1 "cannot reach".
        assert code == 0, stderr
        assert elapsed < 3.0, f"took {elapsed:.1f}s"
        assert "worker stopped before it finished starting" in stderr
    finally:
        worker.kill()


async def test_sigterm_with_a_stuck_handler_exits_within_the_drain_bound_and_requeues(
    amqp_url: str, unique_name: str, tmp_path: Path, admin: BrokerAdmin
) -> None:
    queue, dead = f"{unique_name}.shutdown", f"{unique_name}.shutdown.dead"
    marks = tmp_path / "marks"
    drain = 2.0
    worker = _WorkerProcess(marks, _env(amqp_url, unique_name, WORKER_DRAIN_TIMEOUT=str(drain)))
    try:
        async with asyncio.timeout(30):
            while (await admin.consumers(queue) or 0) < 1:
                assert worker.process.poll() is None, worker.process.communicate()[1]
                await asyncio.sleep(0.1)
        publisher = await Publisher.connect(BrokerSettings(amqp_url=amqp_url, group=unique_name))
        try:
            body = {
                "guild_id": "1300000000000000003",
                "user": {"id": "1300000000000000009", "username": "carol"},
            }
            await publisher.publish("GUILD_MEMBER_ADD", json.dumps(body).encode())
        finally:
            await publisher.close()
        async with asyncio.timeout(20):
            while not marks.exists():
                await asyncio.sleep(0.02)
        sent = worker.terminate()
        code, stderr = await worker.wait(timeout=60)
        elapsed = time.monotonic() - sent
        assert code == 0, stderr
        # drain + closing, far below Compose's 30 s grace period
        assert elapsed < drain + 8, f"took {elapsed:.1f}s"
        assert "consumer.stop_timeout" in stderr
        # the cancelled handler's message went back to the queue: not acked, not dead-lettered
        assert [await admin.depth(queue), await admin.depth(dead)] == [1, 0]
    finally:
        worker.kill()
        await admin.cleanup(queues=(queue, dead), exchanges=(unique_name, f"{unique_name}.dlx"))


def test_drain_timeout_defaults_below_composes_grace_period_and_bad_values_name_the_key() -> None:
    compose = (Path(__file__).parents[3] / "docker-compose.yml").read_text()
    assert "stop_grace_period: 30s" in compose
    assert DEFAULT_DRAIN_TIMEOUT <= 30 - 10
    env = {"DISCORD_TOKEN": "t"}
    assert WorkerSettings.from_env(env).drain_timeout == DEFAULT_DRAIN_TIMEOUT
    assert WorkerSettings.from_env({**env, "WORKER_DRAIN_TIMEOUT": "2.5"}).drain_timeout == 2.5
    for bad in ("soon", "0", "-1"):
        with pytest.raises(WorkerConfigError) as info:
            WorkerSettings.from_env({**env, "WORKER_DRAIN_TIMEOUT": bad})
        assert info.value.key == "WORKER_DRAIN_TIMEOUT"
