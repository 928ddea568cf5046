"""The send path: headers, rate limits, retries, and error translation at the boundary."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from spectacles.broker import Backoff
from spectacles.models import encode
from spectacles.observability import get_logger, register_secret

from ._errors import RestConnectionError, http_exception_from_response
from ._guard import InvalidRequestGuard
from ._metrics import RATE_LIMITED, REQUEST_SECONDS, REQUESTS, RETRIES
from ._ratelimit import RateLimiter, parse_429
from ._route import Route

__all__ = [
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "PROXY_AUTH_ENV",
    "PROXY_AUTH_HEADER",
    "PROXY_ERROR_HEADER",
    "USER_AGENT",
    "HTTPClient",
    "resolve_base_url",
]

_log = get_logger("spectacles.rest")

API_URL_ENV: Final = "DISCORD_API_URL"
DEFAULT_API_URL: Final = "https://discord.com/api/v10"
#: The REST proxy's shared secret: clients send it in ``PROXY_AUTH_HEADER``, separate from
#: Discord's own ``Authorization: Bot ...``, so both work in the proxy's two modes.
PROXY_AUTH_ENV: Final = "REST_PROXY_AUTH"
PROXY_AUTH_HEADER: Final = "X-Spectacles-Proxy-Auth"
#: Marks answers the proxy wrote itself (Discord never saw the request).
PROXY_ERROR_HEADER: Final = "X-Spectacles-Proxy-Error"
#: Hosts that are Discord itself: the proxy secret is never sent there.
_DISCORD_HOSTS: Final = ("discord.com", "discordapp.com")


def _package_version() -> str:
    try:
        return version("spectacles-rest")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.1.0"


#: Discord requires ``DiscordBot ($url, $version)``; anything after it is free text.
USER_AGENT: Final = (
    f"DiscordBot (https://github.com/spectacles-py, {_package_version()}) spectacles-rest"
)

#: Audit-log reasons longer than this are rejected by Discord.
_MAX_REASON_LENGTH: Final = 512
#: 5xx answers worth retrying: Discord's own hiccups, not a refusal of the request.
_RETRY_STATUSES: Final = frozenset({500, 502, 503, 504})
#: Methods safe to repeat when we cannot tell whether the first attempt reached Discord
#: (PATCH here only ever sets absolute values, so repeating it changes nothing).
_REPEATABLE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


def resolve_base_url(base_url: str | None) -> str:
    """The API base: the argument, else ``DISCORD_API_URL``, else Discord's v10 URL."""
    url = (base_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(
            f"{API_URL_ENV} / base_url must be an http(s) URL such as {DEFAULT_API_URL!r}, "
            f"got {url!r}"
        )
    return url


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes
    retry_after: float | None
    is_global: bool


class HTTPClient:
    """Sends requests for one token through a rate limiter and an invalid-request guard.

    Waiting for a bucket or the global limit happens before sending; a 429 (a limit we could
    not predict, e.g. another process using the token) waits ``Retry-After`` and retries;
    5xx and connection failures are retried with capped exponential backoff (connection
    failures mid-request only for methods safe to repeat, so a POST never runs twice).
    """

    def __init__(
        self,
        token: str | None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        max_retries: int = 3,
        ratelimiter: RateLimiter | None = None,
        invalid_request_guard: InvalidRequestGuard | None = None,
        max_ratelimit_retries: int = 8,
        max_ratelimit_wait: float = 300.0,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
        request_timeout: float = 30.0,
        user_agent: str = USER_AGENT,
        proxy_auth: str | None = None,
    ) -> None:
        if token is not None:
            token = token.strip().removeprefix("Bot ").strip()
            if not token:
                raise ValueError(
                    "token is empty: set DISCORD_TOKEN to the bot token, or pass None when a "
                    "REST proxy adds the Authorization header"
                )
            register_secret(token)
        if max_retries < 0 or max_ratelimit_retries < 0:
            raise ValueError("max_retries and max_ratelimit_retries must be >= 0")
        self.base_url = resolve_base_url(base_url)
        self.ratelimiter = ratelimiter or RateLimiter()
        self.invalid_request_guard = invalid_request_guard or InvalidRequestGuard()
        self._session = session
        self._owns_session = session is None
        self._max_retries = max_retries
        self._max_ratelimit_retries = max_ratelimit_retries
        self._max_ratelimit_wait = max_ratelimit_wait
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._headers: dict[str, str] = {"User-Agent": user_agent}
        if token is not None:
            self._headers["Authorization"] = f"Bot {token}"
        proxy_auth = os.environ.get(PROXY_AUTH_ENV, "") if proxy_auth is None else proxy_auth
        if proxy_auth.strip() and not _is_discord(self.base_url):
            register_secret(proxy_auth.strip())
            self._headers[PROXY_AUTH_HEADER] = proxy_auth.strip()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None if self._owns_session else self._session

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the aiohttp session given to the REST client is closed")
            self._session = aiohttp.ClientSession()
        return self._session

    async def request(
        self,
        route: Route,
        *,
        json: Any = None,
        reason: str | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> bytes:
        """Send ``route`` and return the body of its 2xx answer, or raise a typed error."""
        headers = dict(self._headers)
        data: bytes | None = None
        if json is not None:
            data = encode(json)  # snowflakes as strings, structs and datetimes as JSON
            headers["Content-Type"] = "application/json"
        if reason is not None:
            headers["X-Audit-Log-Reason"] = _encode_reason(reason)
        url = self.base_url + route.path
        started = time.perf_counter()
        try:
            return await self._request_with_retries(route, url, headers, data, params)
        finally:
            REQUEST_SECONDS.labels(route.method, route.template).observe(
                time.perf_counter() - started
            )

    async def _request_with_retries(
        self,
        route: Route,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        params: Mapping[str, str | int] | None,
    ) -> bytes:
        failures = 0  # 5xx answers and connection errors so far
        rate_limited = 0
        while True:
            self.invalid_request_guard.check()
            try:
                answer = await self._send_once(route, url, headers, data, params)
            except (aiohttp.ClientError, TimeoutError) as exc:
                repeatable = isinstance(exc, aiohttp.ClientConnectorError) or (
                    route.method in _REPEATABLE_METHODS
                )
                if not repeatable or failures >= self._max_retries:
                    raise RestConnectionError(route.method, route.path, failures + 1, exc) from exc
                failures += 1
                await self._backoff("connection", route, failures, error=repr(exc))
                continue

            status = answer.status
            REQUESTS.labels(route.method, route.template, str(status)).inc()
            scope = answer.headers.get("X-RateLimit-Scope")
            if PROXY_ERROR_HEADER not in answer.headers:  # Discord never saw proxy refusals
                self.invalid_request_guard.record(status, scope)
            if 200 <= status < 300:
                return answer.body
            if status == 429:
                retry_after = answer.retry_after or 0.0
                RATE_LIMITED.labels(scope or ("global" if answer.is_global else "user")).inc()
                if (
                    rate_limited < self._max_ratelimit_retries
                    and retry_after <= self._max_ratelimit_wait
                ):
                    rate_limited += 1
                    RETRIES.labels("rate_limited").inc()
                    _log.warning(
                        "rest.rate_limited",
                        method=route.method,
                        route=route.template,
                        retry_after=retry_after,
                        scope=scope,
                        is_global=answer.is_global,
                        attempt=rate_limited,
                    )
                    continue  # the limiter now holds the bucket (or everything) until reset
            elif status in _RETRY_STATUSES and failures < self._max_retries:
                failures += 1
                await self._backoff("server_error", route, failures, status=status)
                continue
            raise http_exception_from_response(
                status,
                answer.body,
                reason=answer.reason,
                method=route.method,
                path=route.path,
                retry_after=answer.retry_after or 0.0,
                scope=scope,
                is_global=answer.is_global,
            )

    async def _send_once(
        self,
        route: Route,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        params: Mapping[str, str | int] | None,
    ) -> _Answer:
        session = self._get_session()
        async with self.ratelimiter.slot(
            route.bucket_route, route.major, use_global=route.uses_global_limit
        ) as ticket:
            async with session.request(
                route.method,
                url,
                data=data,
                headers=headers,
                params=params,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
            retry_after: float | None = None
            is_global = False
            if response.status == 429:
                retry_after, is_global = parse_429(response.headers, body)
            ticket.complete(
                response.status,
                response.headers,
                retry_after=retry_after,
                is_global=is_global or None,
            )
            return _Answer(
                response.status,
                response.reason or "",
                response.headers,
                body,
                retry_after,
                is_global,
            )

    async def _backoff(self, reason: str, route: Route, failures: int, **details: Any) -> None:
        # Jittered (replicas must not retry in lockstep), doubling from base up to max.
        cap = max(self._backoff_base, self._backoff_max)
        delay = Backoff(self._backoff_base, cap).delay(failures - 1)
        RETRIES.labels(reason).inc()
        _log.warning(
            "rest.retrying",
            reason=reason,
            method=route.method,
            route=route.template,
            attempt=failures,
            delay_s=round(delay, 3),
            **details,
        )
        await asyncio.sleep(delay)


def _is_discord(base_url: str) -> bool:
    host = (URL(base_url).host or "").lower()
    return any(host == d or host.endswith(f".{d}") for d in _DISCORD_HOSTS)


def _encode_reason(reason: str) -> str:
    if len(reason) > _MAX_REASON_LENGTH:
        raise ValueError(
            f"audit-log reason is {len(reason)} characters; Discord accepts at most "
            f"{_MAX_REASON_LENGTH}"
        )
    return quote(reason, safe="")
