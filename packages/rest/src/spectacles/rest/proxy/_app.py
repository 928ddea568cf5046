"""The REST proxy: every request of every worker replica through ONE limiter per token.

Each worker process has its own limiter, which cannot know what the other replicas spend;
a bucket of 5 shared by three replicas then sees up to 15 requests and Discord answers 429s
(which count towards the invalid-request IP ban). The proxy holds the only limiter, so it
can queue a request until its bucket has room, like nirn-proxy. Answers (status, body,
rate-limit headers) are returned unchanged, so clients keep working as against Discord.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from yarl import URL

from spectacles.observability import get_logger, parse_address, register_secret

from .._errors import InvalidRequestLimitReached
from .._guard import InvalidRequestGuard
from .._http import PROXY_AUTH_ENV, PROXY_AUTH_HEADER, PROXY_ERROR_HEADER
from .._ratelimit import RateLimiter, parse_429
from .._route import route_key_for_path
from ._config import ProxySettings
from ._interactions import IngressOffer

__all__ = ["RestProxy", "TooManyTokens", "token_key"]

_log = get_logger("spectacles.rest.proxy")

#: Headers that describe one hop, not the message (RFC 9110 section 7.6.1), plus the ones
#: aiohttp recomputes for the body it sends.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        PROXY_AUTH_HEADER.lower(),  # the proxy's own credential never goes upstream
    }
)
_VERSION_PREFIX: Final = re.compile(r"^/v\d+(?=/|$)")

_REQUESTS = Counter(
    "spectacles_rest_proxy_requests_total",
    "Requests answered by the REST proxy, by route template and status.",
    ["method", "route", "status"],
)
_SECONDS = Histogram(
    "spectacles_rest_proxy_request_seconds",
    "Time a request spent in the proxy, queueing for its rate limit included.",
    ["method", "route"],
)
_UPSTREAM_429 = Counter(
    "spectacles_rest_proxy_upstream_429_total",
    "429 answers the proxy got from upstream (limits it could not predict).",
    ["scope"],
)


class TooManyTokens(Exception):
    """The proxy already has a limiter for ``limit`` distinct tokens and takes no more."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the proxy already serves REST_PROXY_MAX_TOKENS={limit} distinct tokens; "
            "raise REST_PROXY_MAX_TOKENS, or set DISCORD_TOKEN so only that token is accepted"
        )
        self.limit = limit


def token_key(authorization: str | None) -> str:
    """A short, non-reversible id of a token: limiters are keyed and logged by it."""
    if not authorization:
        return "anonymous"
    return hashlib.sha256(authorization.encode()).hexdigest()[:16]


class RestProxy:
    """aiohttp server forwarding ``/api/v*/...`` to the upstream API under shared limits.

    Also serves ``/healthz``, ``/readyz`` and ``/metrics`` on the same port.
    """

    def __init__(self, settings: ProxySettings, *, ingress: IngressOffer | None = None) -> None:
        self.settings = settings
        self.ingress = ingress  # hands interaction answers to a waiting HTTP ingress
        self._host, self._port = parse_address(settings.address)
        self._auth = f"Bot {settings.token}" if settings.token else None
        if settings.token:
            register_secret(settings.token)
        self._proxy_secret = settings.auth.encode() if settings.auth else None
        if settings.auth:
            register_secret(settings.auth)
        self._limiters: dict[str, RateLimiter] = {}
        # Discord counts invalid requests per IP, and the proxy is one IP for all tokens.
        self.invalid_request_guard = InvalidRequestGuard(settings.invalid_request_threshold)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application (exposed for embedding in another server)."""
        # Bodies beyond the limit are refused (413) by aiohttp while reading, before any upstream.
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("*", "/api/{tail:.*}", self._forward)
        return app

    async def start(self) -> None:
        """Open the upstream session and start listening."""
        self._session = aiohttp.ClientSession(
            auto_decompress=False,  # pass bodies through byte for byte
            timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout),
            connector=aiohttp.TCPConnector(limit=256),
        )
        # A client that gave up (timeout, shutdown) must not have its request sent later,
        # after it may have retried: cancel the handler, which releases its queue slot.
        self._runner = web.AppRunner(self.make_app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port)
        await self._site.start()
        if self.ingress is not None:
            await self.ingress.start()
        _log.info(
            "rest_proxy.started",
            address=f"{self._host}:{self.port}",
            upstream=self.settings.upstream,
            injects_token=self._auth is not None,
            requires_proxy_auth=self._proxy_secret is not None,
            max_body_bytes=self.settings.max_body_bytes,
            global_limit=self.settings.global_limit,
        )
        if self._proxy_secret is None:
            _log.warning(
                "rest_proxy.anonymous_access",
                injects_token=self._auth is not None,
                hint=(
                    f"anyone who can reach {self._host}:{self.port} may use the proxy"
                    + (" AS THE BOT" if self._auth is not None else "")
                    + f" and spend its invalid-request budget; set {PROXY_AUTH_ENV}"
                ),
            )

    async def stop(self) -> None:
        """Stop listening (in-flight requests finish first), then close the upstream session."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        if self.ingress is not None:
            await self.ingress.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RestProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port (the real one when the address asked for port 0)."""
        server = self._site._server if self._site is not None else None
        sockets = getattr(server, "sockets", None)
        if sockets:
            return int(sockets[0].getsockname()[1])
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the proxy; workers use ``url + "/api/v10"`` as ``DISCORD_API_URL``."""
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self.port}"

    def limiter_for(self, authorization: str | None) -> RateLimiter:
        """The one limiter of a token (created on first use).

        Raises `TooManyTokens` for a new token beyond ``max_tokens``: every client choosing
        its own header must not grow memory, and the redaction work of every log line, forever.
        """
        key = token_key(authorization)
        limiter = self._limiters.get(key)
        if limiter is None:
            tokens = len(self._limiters) - ("anonymous" in self._limiters)
            if authorization and tokens >= self.settings.max_tokens:
                raise TooManyTokens(self.settings.max_tokens)
            limiter = self._limiters[key] = RateLimiter(global_limit=self.settings.global_limit)
            if authorization:
                register_secret(authorization.removeprefix("Bot ").strip())
            _log.info("rest_proxy.new_token", token_id=key)
        return limiter

    # -- forwarding -----------------------------------------------------------------------

    def _is_proxy_client(self, request: web.Request) -> bool:
        """Whether the request carries ``REST_PROXY_AUTH`` (compared in constant time)."""
        if self._proxy_secret is None:
            return True
        sent = request.headers.get(PROXY_AUTH_HEADER, "").strip().encode("utf-8", "replace")
        return hmac.compare_digest(sent, self._proxy_secret)

    def _is_own_token(self, authorization: str) -> bool:
        """With ``DISCORD_TOKEN`` set, the proxy is that bot's alone: other tokens are refused."""
        assert self.settings.token is not None
        sent = authorization.strip().removeprefix("Bot ").strip()
        return hmac.compare_digest(sent.encode(), self.settings.token.encode())

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        raw_path, _, query = request.raw_path.partition("?")
        api_path = _VERSION_PREFIX.sub("", raw_path.removeprefix("/api"), count=1) or "/"
        bucket_route, major, use_global = route_key_for_path(request.method, api_path)
        template = bucket_route.partition(" ")[2]
        if not self._is_proxy_client(request):
            # Refused here: no limiter, no upstream call, nothing counted by the guard.
            _REQUESTS.labels(request.method, template, "401").inc()
            return _proxy_error(
                401, f"401: Unauthorized (send {PROXY_AUTH_HEADER}: the proxy's {PROXY_AUTH_ENV})"
            )
        too_big = _body_too_big(request, self.settings.max_body_bytes)
        if too_big is not None:
            _REQUESTS.labels(request.method, template, "413").inc()
            return too_big
        authorization = request.headers.get("Authorization") or None
        if self._auth is not None:
            if authorization is not None and not self._is_own_token(authorization):
                _REQUESTS.labels(request.method, template, "401").inc()
                # Discord's own answer, so clients raise their usual Unauthorized (marked as the
                # proxy's, so their invalid-request guards do not count what Discord never saw).
                return web.json_response(
                    {"message": "401: Unauthorized", "code": 0},
                    status=401,
                    headers={PROXY_ERROR_HEADER: "1"},
                )
            authorization = self._auth
        try:
            limiter = self.limiter_for(authorization)
        except TooManyTokens as exc:
            _REQUESTS.labels(request.method, template, "503").inc()
            _log.warning("rest_proxy.too_many_tokens", token_id=token_key(authorization))
            return _proxy_error(503, str(exc))
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        if authorization:
            headers["Authorization"] = authorization
        # Already percent-encoded by the client: forward it byte for byte (emoji in paths).
        url = URL(self.settings.upstream + api_path + (f"?{query}" if query else ""), encoded=True)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # a chunked body without Content-Length
            _REQUESTS.labels(request.method, template, "413").inc()
            return _too_big(self.settings.max_body_bytes)
        if self.ingress is not None:
            taken = await self.ingress.offer(request.method, api_path, request.headers, body)
            if taken is not None:
                _REQUESTS.labels(request.method, template, str(taken.status)).inc()
                return taken
        response = await self._send(
            request.method, url, headers, body, limiter, bucket_route, major, use_global
        )
        _REQUESTS.labels(request.method, template, str(response.status)).inc()
        _SECONDS.labels(request.method, template).observe(time.perf_counter() - started)
        return response

    async def _send(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes,
        limiter: RateLimiter,
        bucket_route: str,
        major: str,
        use_global: bool,
    ) -> web.Response:
        assert self._session is not None, "RestProxy.start() was not awaited"
        attempt = 0
        while True:
            try:
                self.invalid_request_guard.check()
            except InvalidRequestLimitReached as exc:
                return _proxy_error(503, str(exc), retry_after=exc.retry_after)
            try:
                async with limiter.slot(bucket_route, major, use_global=use_global) as ticket:
                    async with self._session.request(
                        method, url, headers=headers, data=body or None, allow_redirects=False
                    ) as upstream:
                        payload = await upstream.read()
                    retry_after, is_global = (
                        parse_429(upstream.headers, _maybe_json(upstream.headers, payload))
                        if upstream.status == 429
                        else (None, False)
                    )
                    ticket.complete(
                        upstream.status,
                        upstream.headers,
                        retry_after=retry_after,
                        is_global=is_global or None,
                    )
            except TimeoutError:
                return _proxy_error(504, "upstream did not answer in time")
            except aiohttp.ClientError as exc:
                _log.warning("rest_proxy.upstream_unreachable", error=repr(exc))
                return _proxy_error(502, f"upstream unreachable: {type(exc).__name__}")
            scope = upstream.headers.get("X-RateLimit-Scope")
            self.invalid_request_guard.record(upstream.status, scope)
            if upstream.status == 429:
                _UPSTREAM_429.labels(scope or ("global" if is_global else "user")).inc()
                _log.warning(
                    "rest_proxy.upstream_rate_limited",
                    route=bucket_route,
                    retry_after=retry_after,
                    scope=scope,
                    attempt=attempt + 1,
                )
                if attempt < self.settings.max_retries:
                    attempt += 1
                    continue  # the request did not happen; the limiter now waits for reset
            return web.Response(
                status=upstream.status,
                reason=upstream.reason,
                body=payload,
                headers=_response_headers(upstream.headers),
            )

    # -- health ---------------------------------------------------------------------------

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready = self._session is not None and not self._session.closed
        return web.json_response(
            {
                "ready": ready,
                "tokens": len(self._limiters),
                "invalid_requests": self.invalid_request_guard.count,
            },
            status=200 if ready else 503,
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in upstream.items() if k.lower() not in _HOP_BY_HOP)


def _maybe_json(headers: CIMultiDictProxy[str], payload: bytes) -> bytes:
    # A compressed body cannot be read for retry_after; the headers carry it too.
    return b"" if headers.get("Content-Encoding") else payload


def _body_too_big(request: web.Request, limit: int) -> web.Response | None:
    """413 at once when the declared length is over the limit (nothing is read)."""
    length = request.content_length
    return _too_big(limit) if length is not None and length > limit else None


def _too_big(limit: int) -> web.Response:
    return _proxy_error(413, f"request body larger than REST_PROXY_MAX_BODY_BYTES={limit}")


def _proxy_error(status: int, message: str, *, retry_after: float | None = None) -> web.Response:
    headers = {PROXY_ERROR_HEADER: "1"}
    if retry_after is not None:
        headers["Retry-After"] = f"{max(retry_after, 0.0):.3f}"
    return web.json_response({"code": 0, "message": message}, status=status, headers=headers)


async def serve_forever(
    settings: ProxySettings, stop: asyncio.Event, *, ingress: IngressOffer | None = None
) -> None:
    """Run a proxy until ``stop`` is set (not at all if it already is)."""
    if stop.is_set():
        return
    async with RestProxy(settings, ingress=ingress):
        await stop.wait()
