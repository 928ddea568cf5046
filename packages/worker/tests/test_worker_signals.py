"""``Worker.run()`` in a real process: SIGTERM lets the in-flight handler finish, acks, exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spectacles.broker.admin import BrokerAdmin
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings

# Also run against RabbitMQ 4 (scripts/rabbit4.sh).
pytestmark = pytest.mark.rmq4

WORKER_SCRIPT = textwrap.dedent(
    """
    import asyncio, pathlib, sys
    from spectacles.worker import Worker

    marks = pathlib.Path(sys.argv[1])
    worker = Worker("sigterm")

    @worker.on("GUILD_MEMBER_ADD")
    async def on_join(member, ctx):
        marks.write_text("started")
        await asyncio.sleep(1.0)
        marks.write_text("finished")

    worker.run()
    """
)


async def test_sigterm_finishes_in_flight_handler_and_exits_zero(
    amqp_url: str, unique_name: str, tmp_path: Path, admin: BrokerAdmin
) -> None:
    queue = f"{unique_name}.sigterm"
    marks = tmp_path / "marks"
    env = {
        **os.environ,
        "DISCORD_TOKEN": "test-token-not-used",
        "AMQP_URL": amqp_url,
        "BROKER_GROUP": unique_name,
        "DISCORD_API_URL": "http://127.0.0.1:9/api/v10",
        "METRICS_ADDRESS": "127.0.0.1:0",
        "LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, str(marks)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with asyncio.timeout(20):
            while (await admin.consumers(queue) or 0) < 1:
                assert process.poll() is None, process.communicate()[1]
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
        async with asyncio.timeout(10):
            while not marks.exists():
                await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=20)
        assert process.returncode == 0, stderr
        assert marks.read_text() == "finished"
        assert "worker stopped" in stderr
        assert await admin.depth(queue) == 0  # acked, not requeued
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        await admin.cleanup(
            queues=(queue, f"{queue}.dead"), exchanges=(unique_name, f"{unique_name}.dlx")
        )
