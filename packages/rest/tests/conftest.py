"""Fixtures of the REST tests: a scriptable local upstream, and simulators with low limits.

(Test modules import nothing from here: with ``--import-mode=importlib`` conftest is not
importable, so helpers hang off the fixture objects.)
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from spectacles.simulator import DEFAULT_ROUTE_LIMITS, RouteLimit, Simulator, SimulatorConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Upstream:
    """Serves a scripted list of handlers, one per request, and records what it received."""

    MESSAGE = {
        "id": "1000",
        "channel_id": "10",
        "content": "hi",
        "timestamp": "2024-01-01T00:00:00+00:00",
        "author": {"id": "1", "username": "bot", "bot": True},
    }

    def __init__(self) -> None:
        self.script: list[Handler] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes, float]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            (
                request.method,
                request.path_qs,
                dict(request.headers),
                body,
                time.monotonic(),
            )
        )
        handler = self.script.pop(0) if self.script else self.ok
        return await handler(request)

    @classmethod
    async def ok(cls, _request: web.Request) -> web.StreamResponse:
        return web.json_response(cls.MESSAGE)

    @staticmethod
    def status(code: int, body: dict[str, object] | None = None, **headers: str) -> Handler:
        async def respond(_request: web.Request) -> web.StreamResponse:
            return web.json_response(
                body or {"message": f"{code}", "code": 0}, status=code, headers=headers
            )

        return respond

    @staticmethod
    async def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # the connection dies before any answer
        await asyncio.sleep(0.1)
        return web.Response()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}/api/v10"
    yield server
    await runner.cleanup()


class SimHarness:
    """A running simulator plus the control-API calls the REST tests need."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.token = TOKEN
        self._session = session

    @property
    def api_url(self) -> str:
        return self.sim.api_url

    async def control(self, method: str, path: str, json: Any = None) -> Any:
        async with self._session.request(method, self.sim.control_url + path, json=json) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def stats(self) -> dict[str, Any]:
        return dict(await self.control("GET", "/stats"))

    async def guilds(self) -> list[dict[str, Any]]:
        return list(await self.control("GET", "/guilds"))

    async def guild(self, guild_id: int | str) -> dict[str, Any]:
        return dict(await self.control("GET", f"/guilds/{guild_id}"))

    async def messages(self, channel_id: int | str) -> list[dict[str, Any]]:
        return list(await self.control("GET", f"/channels/{channel_id}/messages"))

    async def rest_log(self) -> list[dict[str, Any]]:
        return list(await self.control("GET", "/rest-log"))


TOKEN = "rest-test-token"


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Awaitable[SimHarness]]]:
    """Start simulators with the given config overrides (route limits as {route: (n, per)})."""
    stack = contextlib.AsyncExitStack()
    session = await stack.enter_async_context(aiohttp.ClientSession())

    async def start(
        route_limits: dict[str, tuple[int, float]] | None = None, **config: Any
    ) -> SimHarness:
        limits = dict(DEFAULT_ROUTE_LIMITS)
        for route, (limit, per) in (route_limits or {}).items():
            limits[route] = RouteLimit(limit, per)
        sim_config = SimulatorConfig(token=TOKEN, route_limits=limits, **config)
        sim = await stack.enter_async_context(Simulator(sim_config, host="127.0.0.1", port=0))
        return SimHarness(sim, session)

    async with stack:
        yield start
