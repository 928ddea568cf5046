"""After a fatal close the token IDENTIFYs at most once per block, however often it restarts.

Real gateway processes against the simulator set up to refuse the bot's privileged intents, so
every IDENTIFY is answered with 4014 (DISALLOWED_INTENTS); the simulator counts IDENTIFYs.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from gateway_testkit import TOKEN, Control, running_simulator, wait_until
from process_kit import delete_token_queues, gateway_process, identify_attempts, process_env

from spectacles.gateway.service import FATAL_BLOCK_RECHECK
from spectacles.models import Intents

pytestmark = pytest.mark.rmq4  # also run against RabbitMQ 4 (make test-rmq4)

OTHER_TOKEN = "sim-token-new-Yt4Wq8"
FIX_4014 = "Privileged Gateway Intents"


@pytest.fixture
async def token_queues(amqp_url: str, group: str) -> AsyncIterator[None]:
    yield
    await delete_token_queues(amqp_url, group, TOKEN, OTHER_TOKEN)


async def _refused_once(
    sim_api: str, amqp_url: str, group: str, tmp_path: Path, control: Control
) -> str:
    """First run: IDENTIFY, 4014, exit 1 (and the close goes on record); its output."""
    env = process_env(sim_api, amqp_url, group)
    async with gateway_process(tmp_path, env, "first") as first:
        assert await asyncio.wait_for(first.process.wait(), 30) == 1
    assert await identify_attempts(control) == 1
    return first.output()


async def test_restarts_after_a_fatal_close_identify_once_in_total(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path, token_queues: None
) -> None:
    async with running_simulator(privileged_intents=Intents(0)) as sim:
        control = Control(http, sim.base_url)
        first_output = await _refused_once(sim.api_url, amqp_url, group, tmp_path, control)
        assert "fatal close recorded" in first_output
        env = process_env(sim.api_url, amqp_url, group)
        started = time.monotonic()
        outputs = []
        for run in range(3):  # a supervisor restarting the process
            async with gateway_process(tmp_path, env, f"restart-{run}") as gateway:
                blocked = await gateway.wait_blocked(http)
                if run == 0:
                    # Long enough for rechecks: the log must not repeat itself while it waits.
                    await asyncio.sleep(FATAL_BLOCK_RECHECK + 1)
                stopping = time.monotonic()
                gateway.process.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(gateway.process.wait(), 10) == 0
                assert time.monotonic() - stopping < 2.0
            outputs.append(gateway.output())
        restarts_took = time.monotonic() - started
        attempts = await identify_attempts(control)
        stats = await control.stats()
    assert restarts_took < 60
    assert attempts == 1, "a restart after a fatal close must not IDENTIFY again"
    assert stats["connections"]["total"] == 1
    assert blocked["close_code"] == 4014 and blocked["name"] == "DISALLOWED_INTENTS"
    assert FIX_4014 in blocked["fix"] and "privileged intents" in blocked["cause"]
    for output in outputs:
        lines = [line for line in output.splitlines() if "not identifying" in line]
        assert len(lines) == 1, output[-3000:]
        assert FIX_4014 in lines[0] and "4014" in lines[0]
        assert TOKEN not in output


async def test_a_new_token_is_not_blocked(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path, token_queues: None
) -> None:
    async with (
        running_simulator(privileged_intents=Intents(0)) as refusing,
        running_simulator(token=OTHER_TOKEN) as accepting,
    ):
        await _refused_once(
            refusing.api_url, amqp_url, group, tmp_path, Control(http, refusing.base_url)
        )
        env = process_env(accepting.api_url, amqp_url, group, DISCORD_TOKEN=OTHER_TOKEN)
        async with gateway_process(tmp_path, env, "new-token") as gateway:
            await gateway.wait_ready(http)
        assert await identify_attempts(Control(http, accepting.base_url)) == 1


async def test_clear_fatal_block_env_lifts_the_block(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path, token_queues: None
) -> None:
    async with running_simulator(privileged_intents=Intents(0)) as sim:
        control = Control(http, sim.base_url)
        await _refused_once(sim.api_url, amqp_url, group, tmp_path, control)
        env = process_env(sim.api_url, amqp_url, group, GATEWAY_CLEAR_FATAL_BLOCK="1")
        async with gateway_process(tmp_path, env, "override") as gateway:
            # The operator said the cause is fixed: it IDENTIFYs (and is refused again here).
            assert await asyncio.wait_for(gateway.process.wait(), 30) == 1
        assert await identify_attempts(control) == 2
    assert "fatal-close block cleared" in gateway.output()


async def test_unblock_command_lets_a_waiting_gateway_start(
    amqp_url: str, group: str, http: aiohttp.ClientSession, tmp_path: Path, token_queues: None
) -> None:
    async with running_simulator(privileged_intents=Intents(0)) as sim:
        control = Control(http, sim.base_url)
        await _refused_once(sim.api_url, amqp_url, group, tmp_path, control)
        env = process_env(sim.api_url, amqp_url, group)
        async with gateway_process(tmp_path, env, "waiting") as waiting:
            await waiting.wait_blocked(http)
            async with gateway_process(tmp_path, env, "unblock", args=("unblock",)) as command:
                assert await asyncio.wait_for(command.process.wait(), 30) == 0
            assert "lifted the block" in command.output()
            await wait_until(lambda: waiting.process.returncode is not None, timeout=30)
        assert await identify_attempts(control) == 2
