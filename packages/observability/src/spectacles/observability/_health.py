"""One HTTP port per service for liveness, readiness and Prometheus metrics.

Orchestrators poll ``/healthz`` (restart when dead) and ``/readyz`` (route work when ready), and
Prometheus scrapes ``/metrics``; keeping them on one small aiohttp app means one port to publish.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

__all__ = ["HealthServer", "ReadyCheck", "parse_address"]

ReadyCheck = Callable[[], "tuple[bool, dict[str, Any]] | Awaitable[tuple[bool, dict[str, Any]]]"]


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:80`` and ``:8080`` too) and say what is wrong otherwise."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"address {address!r} must look like host:port, e.g. 0.0.0.0:8080")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on one address."""

    def __init__(
        self,
        address: str = "0.0.0.0:8080",
        *,
        ready: ReadyCheck | None = None,
        registry: CollectorRegistry = REGISTRY,
        views: Mapping[str, Callable[[], Any]] | None = None,
    ) -> None:
        self._host, self._port = parse_address(address)
        self._ready = ready
        # More read-only JSON pages, e.g. the gateway's `/cluster`: path -> what to serialise.
        self._views = dict(views or {})
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when the address asked for port 0)."""
        if self._site is not None and self._site._server is not None:
            sockets = getattr(self._site._server, "sockets", None)
            if sockets:
                return int(sockets[0].getsockname()[1])
        return self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        for route, view in self._views.items():
            app.router.add_get(route, self._json_view(view))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port)
        await self._site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @staticmethod
    def _json_view(view: Callable[[], Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(_request: web.Request) -> web.Response:
            return web.json_response(view())

        return handle

    async def _healthz(self, _request: web.Request) -> web.Response:
        # Answering at all proves the event loop is not blocked.
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        if self._ready is None:
            return web.json_response({"ready": True})
        try:
            result = self._ready()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, timeout=5)
            ready, details = result
        except Exception as exc:  # a failing check means not ready, with the reason shown
            ready, details = False, {"error": f"{type(exc).__name__}: {exc}"}
        return web.json_response({"ready": ready, **details}, status=200 if ready else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
