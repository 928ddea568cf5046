"""Async Discord REST client with Discord's rate limits done right, and a shared-limit proxy.

``RestClient`` sends typed requests for one token; ``RateLimiter`` (per-bucket and global
limits learned from ``X-RateLimit-*`` headers) and ``InvalidRequestGuard`` (stops before
Discord's invalid-request IP ban) can be shared between clients of one process. Across
processes, run ``spectacles-rest-proxy`` and point ``DISCORD_API_URL`` at it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spectacles.models import GatewayBot, SessionStartLimit

    from ._client import RestClient
    from ._errors import (
        BadRequest,
        Forbidden,
        HTTPException,
        InvalidRequestLimitReached,
        NotFound,
        RateLimited,
        RestConnectionError,
        RestError,
        ServerError,
        Unauthorized,
    )
    from ._guard import DISCORD_INVALID_REQUEST_LIMIT, InvalidRequestGuard, is_invalid_request
    from ._http import (
        API_URL_ENV,
        DEFAULT_API_URL,
        PROXY_AUTH_ENV,
        PROXY_AUTH_HEADER,
        USER_AGENT,
        HTTPClient,
        resolve_base_url,
    )
    from ._ratelimit import GlobalRateLimit, RateLimiter, RateLimitHeaders, RateLimitTicket
    from ._route import MAJOR_PARAMETERS, Route, route_key_for_path

# Imported on first use: `spectacles-rest-proxy` installs its signal handlers before the
# second it takes to import aiohttp and friends (PID 1 must honour SIGTERM during start-up).
_EXPORTS: dict[str, str] = {
    "API_URL_ENV": "._http",
    "BadRequest": "._errors",
    "DEFAULT_API_URL": "._http",
    "DISCORD_INVALID_REQUEST_LIMIT": "._guard",
    "Forbidden": "._errors",
    "GatewayBot": "spectacles.models",
    "GlobalRateLimit": "._ratelimit",
    "HTTPClient": "._http",
    "HTTPException": "._errors",
    "InvalidRequestGuard": "._guard",
    "InvalidRequestLimitReached": "._errors",
    "is_invalid_request": "._guard",
    "MAJOR_PARAMETERS": "._route",
    "NotFound": "._errors",
    "PROXY_AUTH_ENV": "._http",
    "PROXY_AUTH_HEADER": "._http",
    "RateLimited": "._errors",
    "RateLimiter": "._ratelimit",
    "RateLimitHeaders": "._ratelimit",
    "RateLimitTicket": "._ratelimit",
    "resolve_base_url": "._http",
    "RestClient": "._client",
    "RestConnectionError": "._errors",
    "RestError": "._errors",
    "Route": "._route",
    "route_key_for_path": "._route",
    "ServerError": "._errors",
    "SessionStartLimit": "spectacles.models",
    "Unauthorized": "._errors",
    "USER_AGENT": "._http",
}

__all__ = [
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "DISCORD_INVALID_REQUEST_LIMIT",
    "MAJOR_PARAMETERS",
    "PROXY_AUTH_ENV",
    "PROXY_AUTH_HEADER",
    "USER_AGENT",
    "BadRequest",
    "Forbidden",
    "GatewayBot",
    "GlobalRateLimit",
    "HTTPClient",
    "HTTPException",
    "InvalidRequestGuard",
    "InvalidRequestLimitReached",
    "NotFound",
    "RateLimitHeaders",
    "RateLimitTicket",
    "RateLimited",
    "RateLimiter",
    "RestClient",
    "RestConnectionError",
    "RestError",
    "Route",
    "ServerError",
    "SessionStartLimit",
    "Unauthorized",
    "is_invalid_request",
    "resolve_base_url",
    "route_key_for_path",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
