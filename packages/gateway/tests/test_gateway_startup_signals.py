"""A stop signal during start-up ends the process at once, with status 0 (PID 1 in a container)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from process_kit import gateway_process, process_env


@asynccontextmanager
async def silent_api() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An HTTP server that accepts connections and never answers: /gateway/bot hangs."""
    accepted = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api/v10", accepted
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_while_start_up_waits_exits_0_promptly(
    amqp_url: str, group: str, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    async with silent_api() as (api_url, asked):
        env = process_env(api_url, amqp_url, group)
        async with gateway_process(tmp_path, env, "startup") as gateway:
            await asyncio.wait_for(asked.wait(), 30)  # start-up now waits for /gateway/bot
            sent = time.monotonic()
            gateway.process.send_signal(stop_signal)
            status = await asyncio.wait_for(gateway.process.wait(), 10)
            took = time.monotonic() - sent
    assert status == 0, gateway.output()[-3000:]
    assert took < 2.0
    assert "stop requested during start-up" in gateway.output()
