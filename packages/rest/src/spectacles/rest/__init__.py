"""Async Discord REST client with Discord's rate limits done right, and a shared-limit proxy.

``RestClient`` sends typed requests for one token; ``RateLimiter`` (per-bucket and global
limits learned from ``X-RateLimit-*`` headers) and ``InvalidRequestGuard`` (stops before
Discord's invalid-request IP ban) can be shared between clients of one process. Across
processes, run ``spectacles-rest-proxy`` and point ``DISCORD_API_URL`` at it.
"""

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
from ._http import API_URL_ENV, DEFAULT_API_URL, USER_AGENT, HTTPClient, resolve_base_url
from ._ratelimit import GlobalRateLimit, RateLimiter, RateLimitHeaders, RateLimitTicket
from ._route import MAJOR_PARAMETERS, Route, route_key_for_path

__all__ = [
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "DISCORD_INVALID_REQUEST_LIMIT",
    "MAJOR_PARAMETERS",
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
