"""Fixtures: a real simulator on a free port and a minimal raw gateway client."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import zstandard

from spectacles.simulator import Simulator, SimulatorConfig

TOKEN = "test-token"
# GUILDS | GUILD_MEMBERS | GUILD_MODERATION | GUILD_MESSAGES | MESSAGE_CONTENT
INTENTS = 1 | 2 | 4 | 512 | 32768
FAST = {"identify_interval": 0.0, "token": TOKEN}


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with {code}: {reason}")
        self.code = code
        self.reason = reason


class RawGateway:
    """A deliberately small client: it does only what a test tells it to."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self.frames: list[aiohttp.WSMessage] = []
        self._zlib = zlib.decompressobj()
        self._zstd = zstandard.ZstdDecompressor().decompressobj()
        self._buffer = bytearray()
        self.seq: int | None = None

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                raise Closed(self.ws.close_code, str(msg.extra or ""))
            if msg.type is aiohttp.WSMsgType.ERROR:
                raise Closed(None, str(msg.data))
            self.frames.append(msg)
            if self.compress is None:
                payload = json.loads(msg.data)
            elif self.compress == "zlib-stream":
                self._buffer.extend(msg.data)
                if not bytes(self._buffer).endswith(b"\x00\x00\xff\xff"):
                    continue
                payload = json.loads(self._zlib.decompress(bytes(self._buffer)))
                self._buffer.clear()
            else:
                payload = json.loads(self._zstd.decompress(msg.data))
            if payload.get("s") is not None:
                self.seq = payload["s"]
            return payload

    async def recv_event(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """Skip payloads until dispatch `name` arrives."""
        while True:
            payload = await self.recv(timeout)
            if payload["op"] == 0 and payload["t"] == name:
                return payload

    async def expect_close(self, timeout: float = 5.0) -> int | None:
        try:
            while True:
                await self.recv(timeout)
        except Closed as closed:
            return closed.code

    async def send(self, payload: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(payload))

    async def hello(self) -> dict[str, Any]:
        payload = await self.recv()
        assert payload["op"] == 10, payload
        return payload

    async def identify(
        self, intents: int = INTENTS, shard: list[int] | None = None, token: str = TOKEN
    ) -> dict[str, Any]:
        d: dict[str, Any] = {"token": token, "intents": intents, "properties": {"os": "linux"}}
        if shard is not None:
            d["shard"] = shard
        await self.send({"op": 2, "d": d})
        return await self.recv()

    async def resume(self, session_id: str, seq: int | None, token: str = TOKEN) -> None:
        await self.send({"op": 6, "d": {"token": token, "session_id": session_id, "seq": seq}})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Awaitable[Simulator]]]:
    started: list[Simulator] = []

    async def make(**overrides: Any) -> Simulator:
        sim = Simulator(SimulatorConfig(**{**FAST, **overrides}))
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await asyncio.wait_for(sim.stop(), 10)


@pytest.fixture
async def sim(make_sim: Callable[..., Awaitable[Simulator]]) -> Simulator:
    return await make_sim()


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def gateway(http: aiohttp.ClientSession) -> AsyncIterator[GatewayFactory]:
    opened: list[aiohttp.ClientWebSocketResponse] = []

    @asynccontextmanager
    async def connect(
        sim: Simulator,
        *,
        compress: str | None = None,
        path: str = "/gateway",
        query: str = "v=10&encoding=json",
        hello: bool = True,
    ) -> AsyncIterator[RawGateway]:
        url = f"ws://127.0.0.1:{sim.port}{path}?{query}"
        if compress:
            url += f"&compress={compress}"
        ws = await http.ws_connect(url, autoping=True)
        opened.append(ws)
        client = RawGateway(ws, compress)
        if hello:
            await client.hello()
        try:
            yield client
        finally:
            await ws.close()

    yield connect
    for ws in opened:
        await ws.close()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bot {TOKEN}"}


@pytest.fixture
def bot_headers() -> dict[str, str]:
    return auth()
