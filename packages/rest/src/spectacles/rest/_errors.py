"""Typed REST errors.

Hierarchy (callers branch on types and on ``code``, never on message text)::

    RestError
    ├── HTTPException            Discord answered with an error status
    │   ├── BadRequest           400 (50006 empty message, 50035 invalid form body, ...)
    │   ├── Unauthorized         401 (bad or missing token)
    │   ├── Forbidden            403 (50001 missing access, 50013 missing permissions)
    │   ├── NotFound             404 (10003 channel, 10004 guild, 10007 member, 10013 user)
    │   ├── RateLimited          429 still returned after the retries we allow ourselves
    │   └── ServerError          5xx still returned after the retries
    ├── RestConnectionError      no answer at all (connection refused, reset, timeout)
    └── InvalidRequestLimitReached
                                 refused locally: Discord would soon ban this IP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

__all__ = [
    "BadRequest",
    "Forbidden",
    "HTTPException",
    "InvalidRequestLimitReached",
    "NotFound",
    "RateLimited",
    "RestConnectionError",
    "RestError",
    "ServerError",
    "Unauthorized",
    "http_exception_from_response",
]


class RestError(Exception):
    """Base class of every error raised by ``spectacles.rest``."""


class HTTPException(RestError):
    """Discord answered with an error status.

    ``code`` is Discord's JSON error code (0 when the body had none), ``errors`` the nested
    field errors of a 50035 "Invalid Form Body" (empty mapping otherwise).
    """

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: Mapping[str, Any] | None = None,
        *,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.errors: Mapping[str, Any] = errors or {}
        self.method = method
        self.path = path
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f" on {self.method} {self.path}" if self.method else ""
        text = f"{self.status} (code {self.code}){where}: {self.message}"
        details = "; ".join(f"{field}: {msg}" for field, msg in flatten_form_errors(self.errors))
        return f"{text} ({details})" if details else text


class BadRequest(HTTPException):
    """400: the request was malformed (see ``code`` and ``errors``)."""


class Unauthorized(HTTPException):
    """401: the token is missing or invalid."""


class Forbidden(HTTPException):
    """403: the bot lacks access or permissions for this resource."""


class NotFound(HTTPException):
    """404: the channel, guild, member, user or route does not exist."""


class RateLimited(HTTPException):
    """429 returned after our retries, or a wait longer than the client accepts.

    ``retry_after`` is in seconds; ``scope`` is ``user``, ``global`` or ``shared``.
    """

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: Mapping[str, Any] | None = None,
        *,
        method: str = "",
        path: str = "",
        retry_after: float = 0.0,
        is_global: bool = False,
        scope: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.is_global = is_global
        self.scope = scope
        super().__init__(status, code, message, errors, method=method, path=path)


class ServerError(HTTPException):
    """5xx: Discord failed; retried with backoff before this is raised."""


class RestConnectionError(RestError):
    """No HTTP answer (connection refused or reset, or a timeout) after the allowed retries."""

    def __init__(self, method: str, path: str, attempts: int, cause: BaseException) -> None:
        self.method = method
        self.path = path
        self.attempts = attempts
        self.cause = cause
        super().__init__(
            f"{method} {path} got no answer after {attempts} attempt(s): "
            f"{type(cause).__name__}: {cause}"
        )


class InvalidRequestLimitReached(RestError):
    """Refused locally: too many 401/403/429 answers in Discord's invalid-request window.

    Discord bans an IP for a while after 10,000 such answers in 10 minutes; this guard stops
    earlier so a misbehaving bot degrades instead of getting banned. ``retry_after`` is when
    the oldest counted answer leaves the window.
    """

    def __init__(self, count: int, threshold: int, window: float, retry_after: float) -> None:
        self.count = count
        self.threshold = threshold
        self.window = window
        self.retry_after = retry_after
        super().__init__(
            f"{count} invalid requests (401/403/429) in the last {window:.0f}s reached the "
            f"guard threshold {threshold}; refusing requests for {retry_after:.1f}s. Fix the "
            "cause (bad token, missing permissions, ignored rate limits) before Discord bans "
            "the IP."
        )


_STATUS_ERRORS: dict[int, type[HTTPException]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
}


class _ErrorBody(msgspec.Struct):
    code: int = 0
    message: str = ""
    errors: dict[str, Any] = {}
    retry_after: float | None = None
    global_: bool = msgspec.field(default=False, name="global")


def _parse_error_body(body: bytes) -> _ErrorBody | None:
    try:
        return msgspec.json.decode(body, type=_ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def http_exception_from_response(
    status: int,
    body: bytes,
    *,
    reason: str = "",
    method: str = "",
    path: str = "",
    retry_after: float = 0.0,
    scope: str | None = None,
    is_global: bool = False,
) -> HTTPException:
    """Translate an error response into the matching typed exception."""
    parsed = _parse_error_body(body)
    code = parsed.code if parsed else 0
    message = (parsed.message if parsed and parsed.message else reason) or f"HTTP {status}"
    errors = parsed.errors if parsed else {}
    if status == 429:
        return RateLimited(
            status,
            code,
            message,
            errors,
            method=method,
            path=path,
            retry_after=parsed.retry_after if parsed and parsed.retry_after else retry_after,
            is_global=is_global or bool(parsed and parsed.global_),
            scope=scope,
        )
    if status >= 500:
        return ServerError(status, code, message, errors, method=method, path=path)
    cls = _STATUS_ERRORS.get(status, HTTPException)
    return cls(status, code, message, errors, method=method, path=path)


def flatten_form_errors(errors: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(field.path, message)`` from Discord's nested ``errors`` object."""
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    yield prefix or "<body>", str(item.get("message", item))
        elif isinstance(value, Mapping):
            yield from flatten_form_errors(value, f"{prefix}.{key}" if prefix else key)
