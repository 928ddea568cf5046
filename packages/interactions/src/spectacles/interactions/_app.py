"""The HTTP interactions endpoint: verify, publish like the gateway, answer within 3 s.

Discord POSTs each interaction to the bot's Interactions Endpoint URL and takes the HTTP
response as the interaction's initial answer. The ingress publishes the interaction into the
events exchange exactly as the gateway relays INTERACTION_CREATE, then waits for the worker's
callback (handed over by the REST proxy, see ``_pending``). It arrives in time: that is the
HTTP answer. It does not: the answer is a defer (type 5), and the worker's later answer, which
Discord then refuses as "already acknowledged", becomes an edit of the original (the worker SDK
does that by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any, Final

import msgspec
from aiohttp import web
from prometheus_client import Counter, Histogram

from spectacles.broker import BROKER_FAILURES, Broker, Publisher, shard_for_guild
from spectacles.models import InteractionCallbackType, InteractionType
from spectacles.observability import get_logger, parse_address

from ._pending import PendingAnswers
from ._settings import IngressSettings
from ._signature import RequestRefused, SignatureVerifier, public_key_from_hex

__all__ = ["EVENT", "SESSION_ID", "InteractionsIngress"]

_log = get_logger("spectacles.interactions")

EVENT: Final = "INTERACTION_CREATE"
#: The session part of ``message_id`` (``{shard_id}:{session_id}:{seq}``) for HTTP interactions;
#: ``seq`` is the interaction id, so a message_id is unique and stable like the gateway's.
SESSION_ID: Final = "http"
_PONG: Final = msgspec.json.encode({"type": InteractionCallbackType.PONG})
_DEFERRED: Final = msgspec.json.encode(
    {"type": InteractionCallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE}
)

_REQUESTS = Counter(
    "spectacles_interactions_requests_total",
    "HTTP interaction requests by outcome (answered, deferred, pong, refused, failed).",
    ["outcome"],
)
_SECONDS = Histogram(
    "spectacles_interactions_answer_seconds",
    "Time from Discord's request to the HTTP answer.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
)


class _Head(msgspec.Struct):
    """The fields the ingress itself needs; the body is published byte for byte."""

    id: str
    type: int
    token: str = ""
    guild_id: str | None = None


class InteractionsIngress:
    """aiohttp server: ``POST /interactions`` (also ``POST /``) for Discord."""

    def __init__(
        self,
        settings: IngressSettings,
        *,
        verifier: SignatureVerifier | None = None,
        connection_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.connection_name = connection_name or f"interactions-ingress-{os.getpid()}"
        self._verifier = verifier or SignatureVerifier(
            public_key_from_hex(settings.public_key), max_age=settings.max_age
        )
        self._host, self._port = parse_address(settings.address)
        self._broker: Broker | None = None
        self._publisher: Publisher | None = None
        self._pending: PendingAnswers | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        """Connect to RabbitMQ (fail fast), then listen."""
        stack = contextlib.AsyncExitStack()
        try:
            self._broker = await Broker.connect(
                self.settings.broker, connection_name=self.connection_name, reconnect_delay=0.2
            )
            stack.push_async_callback(self._broker.close)
            self._publisher = await Publisher.connect(
                self.settings.broker, connection_name=f"{self.connection_name}-publisher"
            )
            stack.push_async_callback(self._publisher.close)
            await self._publisher.declare_events_exchange()
            self._pending = PendingAnswers(self._broker)
            await self._pending.start()
            stack.push_async_callback(self._pending.stop)
            app = web.Application(client_max_size=1024 * 1024)
            app.router.add_post("/interactions", self._handle)
            app.router.add_post("/", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            self._site = web.TCPSite(self._runner, self._host, self._port)
            await self._site.start()
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        _log.info("interactions.started", address=f"{self._host}:{self.port}")

    async def stop(self) -> None:
        """Stop listening (requests in flight are answered first), then disconnect."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> InteractionsIngress:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port (the real one when the address asked for port 0)."""
        server = self._site._server if self._site is not None else None
        sockets = getattr(server, "sockets", None)
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    @property
    def url(self) -> str:
        """The endpoint URL to give Discord (behind your TLS terminator)."""
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self.port}/interactions"

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Readiness: publishing and receiving answers both possible."""
        publishing = self._publisher is not None and self._publisher.is_connected
        answers = self._pending is not None and self._pending.ready
        return publishing and answers, {"publishing": publishing, "answers": answers}

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        deadline = started + self.settings.response_timeout
        body = await request.read()
        try:
            self._verifier.verify(
                request.headers.get("X-Signature-Ed25519"),
                request.headers.get("X-Signature-Timestamp"),
                body,
            )
        except RequestRefused as exc:
            _REQUESTS.labels("refused").inc()
            _log.warning("interactions.refused", reason=str(exc), remote=request.remote)
            return web.json_response({"message": "invalid request signature"}, status=401)
        try:
            head = msgspec.json.decode(body, type=_Head)
        except msgspec.DecodeError as exc:
            _REQUESTS.labels("malformed").inc()
            return web.json_response({"message": f"malformed interaction: {exc}"}, status=400)
        if head.type == InteractionType.PING:
            _REQUESTS.labels("pong").inc()
            return _json(_PONG)
        answer = await self._relay(head, body, deadline)
        _SECONDS.observe(time.monotonic() - started)
        return answer

    async def _relay(self, head: _Head, body: bytes, deadline: float) -> web.Response:
        assert self._pending is not None and self._publisher is not None  # set while serving
        pending = self._pending
        answer: asyncio.Future[bytes] | None = None
        try:
            answer = await pending.expect(head.id, head.token)
            try:
                await asyncio.wait_for(self._publish(head, body), deadline - time.monotonic())
                async with asyncio.timeout_at(_loop_time(deadline)):
                    callback = await answer
            finally:
                await pending.forget(head.id)  # from here on, a late answer is "not taken"
        except TimeoutError:
            if answer is None or not answer.done() or answer.cancelled():
                _REQUESTS.labels("deferred").inc()
                _log.info("interactions.deferred", interaction_id=head.id)
                return _json(_DEFERRED)
            callback = answer.result()  # taken in the very iteration the deadline fired
        except BROKER_FAILURES as exc:
            _REQUESTS.labels("failed").inc()
            _log.error("interactions.not_published", interaction_id=head.id, error=str(exc))
            return web.json_response({"message": "cannot reach the bot's workers"}, status=503)
        _REQUESTS.labels("answered").inc()
        return _json(callback)

    async def _publish(self, head: _Head, body: bytes) -> None:
        """Publish as the gateway does: same exchange, routing key, properties and headers."""
        assert self._publisher is not None
        shard_id = shard_for_guild(head.guild_id, self.settings.shard_count) if head.guild_id else 0
        seq = int(head.id)
        headers: dict[str, Any] = {"shard_id": shard_id, "seq": seq}
        if head.guild_id is not None:
            headers["guild_id"] = head.guild_id
        await self._publisher.publish(
            EVENT,
            body,
            headers=headers,
            message_id=f"{shard_id}:{SESSION_ID}:{seq}",
            type=EVENT,
            timestamp=time.time(),
        )


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def _loop_time(deadline: float) -> float:
    """``deadline`` (on time.monotonic) on the event loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())
