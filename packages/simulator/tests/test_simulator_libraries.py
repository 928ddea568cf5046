"""Fidelity: the widely used Python Discord libraries run unmodified against the simulator.

Each library gets its own pinned virtualenv (py-cord and discord.py both install the `discord`
module), built once with uv into pytest's cache directory (`.pytest_cache/d/sim-libraries`;
uv's own cache makes a rebuild fast). A small bot script (`tests/libclients/`) is run in it
against a simulator started by the test, configured only through the library's setting for
the REST base URL; every library then asks the simulator's `GET /gateway[/bot]` for the
gateway URL. Each must reach READY, receive `!ping`, reply `Pong!` through REST, survive a
RECONNECT (op 7) by resuming, and still answer afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from spectacles.simulator import Simulator

# A token in Discord's format (base64 of an id, timestamp, HMAC): hikari parses the first part.
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GsimAA.spectacles-simulator-library-test"
CLIENTS = Path(__file__).parent / "libclients"


@dataclass(frozen=True)
class Library:
    pin: str  # the requirement installed into its venv
    script: str
    extra: tuple[str, ...] = ()  # what the library imports but does not declare


# Pinned: a new release is adopted by changing the pin here (and the table in the README).
LIBRARIES = {
    "hikari": Library("hikari==2.7.0", "hikari_bot.py"),
    "disnake": Library("disnake==2.12.2", "disnake_bot.py"),
    # nextcord imports pkg_resources (setuptools < 81) without depending on setuptools.
    "nextcord": Library("nextcord==2.6.0", "nextcord_bot.py", ("setuptools==80.9.0",)),
    "py-cord": Library("py-cord==2.8.1", "pycord_bot.py"),
    "interactions.py": Library("discord-py-interactions==5.16.0", "interactions_bot.py"),
}


@pytest.fixture(scope="session")
def library_python(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Path]]:
    """The interpreter of a library's venv, built on first use and reused while the pin holds.

    The first use starts every library's build at once (they mostly wait on I/O), so a cold run
    costs about the slowest build rather than the sum.
    """
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    root = (
        cache.mkdir("sim-libraries")
        if cache is not None
        else Path(tempfile.gettempdir()) / "spectacles-sim-libraries"
    )

    def build(name: str) -> Path:
        library = LIBRARIES[name]
        pin = " ".join((library.pin, *library.extra))
        venv = root / library.pin.replace("==", "-")
        python = venv / "bin" / "python"
        marker = venv / ".spectacles-pin"
        if marker.exists() and marker.read_text() == pin and python.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(
            [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
            check=True,
            timeout=120,
        )
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(python), *pin.split()],
            check=True,
            timeout=600,
        )
        marker.write_text(pin)
        return python

    with ThreadPoolExecutor(max_workers=len(LIBRARIES)) as pool:
        builds: dict[str, Future[Path]] = {}

        def python_of(name: str) -> Path:
            if not builds:
                builds.update({n: pool.submit(build, n) for n in LIBRARIES})
            return builds[name].result()

        yield python_of


class Bot:
    """The library's bot process; `expect` awaits its next milestone line."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr

    async def expect(self, event: str, timeout: float = 30.0) -> list[str]:
        """Skip lines until `EVENT <event> ...`; its words after the event name."""
        assert self.process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), max(remaining, 0))
            except TimeoutError:
                pytest.fail(f"no '{event}' in {timeout}s; stderr:\n{self._tail()}")
            if not line:
                pytest.fail(f"the bot exited before '{event}'; stderr:\n{self._tail()}")
            words = line.decode().split()
            if words[:2] == ["EVENT", event]:
                return words[2:]

    def _tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-4000:]


@asynccontextmanager
async def run_bot(python: Path, script: str, sim: Simulator, tmp: Path) -> AsyncIterator[Bot]:
    stderr = tmp / "bot-stderr.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp),
        "SIM_API_URL": sim.api_url,
        "SIM_TOKEN": TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    with stderr.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            str(python),
            str(CLIENTS / script),
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            env=env,
            cwd=tmp,
        )
        try:
            yield Bot(process, stderr)
        finally:
            if process.returncode is None:
                process.kill()
            await asyncio.wait_for(process.wait(), 10)


async def _ping_and_expect_pong(
    bot: Bot, sim: Simulator, http: aiohttp.ClientSession, guild_id: int, channel_id: int
) -> None:
    url = f"{sim.control_url}/guilds/{guild_id}/channels/{channel_id}/messages"
    async with http.post(url, json={"content": "!ping"}) as response:
        assert response.status == 200
        ping_id = (await response.json())["id"]
    assert (await bot.expect("message"))[0] == ping_id
    # The reply comes back to the bot as its own MESSAGE_CREATE.
    pong_id = int((await bot.expect("message"))[0])
    pong = sim.world.channel(channel_id).find(pong_id)
    assert pong is not None and pong.content == "Pong!"
    assert pong.author.id == sim.world.bot.id
    assert pong.message_reference is not None
    assert pong.message_reference["message_id"] == ping_id


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", list(LIBRARIES))
async def test_library_connects_replies_and_resumes_after_reconnect(
    name: str,
    library_python: Callable[[str], Path],
    make_sim: Any,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    python = await asyncio.to_thread(library_python, name)
    sim = await make_sim(guilds=1, members_per_guild=3, heartbeat_interval_ms=5000, token=TOKEN)
    guild = next(iter(sim.world.guilds.values()))
    async with run_bot(python, LIBRARIES[name].script, sim, tmp_path) as bot:
        assert (await bot.expect("ready", timeout=60))[0] == str(sim.world.bot.id)
        await _ping_and_expect_pong(bot, sim, http, guild.id, guild.system_channel_id)

        async with http.post(f"{sim.control_url}/shards/0/reconnect") as response:
            assert response.status == 200
        await bot.expect("resumed")
        async with http.get(f"{sim.control_url}/stats") as response:
            stats = await response.json()
        assert stats["resumes"] == 1 and stats["identifies"] == 1, stats

        await _ping_and_expect_pong(bot, sim, http, guild.id, guild.system_channel_id)
