"""Typed errors of the gateway service.

Hierarchy (code branches on these types, never on message text)::

    GatewayError
    ├── ConfigError             bad configuration; the process exits with code 2
    ├── IdentifyLimitExceeded   session_start_limit cannot cover the shards to start
    ├── GatewayUnreachable      /gateway/bot failed before any shard could start
    └── TransportError          the websocket failed or closed
        └── ServerClosed        Discord closed it with a close code (policy attached)
"""

from __future__ import annotations

from collections.abc import Iterable

from spectacles.models import ClosePolicy

__all__ = [
    "ConfigError",
    "GatewayError",
    "GatewayUnreachable",
    "IdentifyLimitExceeded",
    "ServerClosed",
    "TransportError",
]


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration value is missing or invalid; `key` names where it came from."""

    def __init__(self, key: str, problem: str, choices: Iterable[str] | None = None) -> None:
        self.key = key
        self.problem = problem
        self.choices: tuple[str, ...] = tuple(choices) if choices is not None else ()
        message = f"config key '{key}': {problem}"
        if self.choices:
            message += f" (valid: {', '.join(self.choices)})"
        super().__init__(message)


class IdentifyLimitExceeded(GatewayError):
    """Starting `wanted` sessions would exceed Discord's `remaining` IDENTIFY quota."""

    def __init__(self, wanted: int, remaining: int, reset_after_ms: int) -> None:
        self.wanted = wanted
        self.remaining = remaining
        self.reset_after_ms = reset_after_ms
        super().__init__(
            f"refusing to IDENTIFY {wanted} shard(s): session_start_limit.remaining is "
            f"{remaining} (resets in {reset_after_ms / 1000:.0f} s); exhausting it resets the "
            "bot token. Wait for the reset, or run fewer shards in this process."
        )


class GatewayUnreachable(GatewayError):
    """GET /gateway/bot failed, so no shard can be planned."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(f"GET /gateway/bot failed: {cause}")


class TransportError(GatewayError):
    """The websocket connection failed or was lost (reconnect and resume)."""


class ServerClosed(TransportError):
    """The server closed the websocket with `code`; `policy` says what to do next."""

    def __init__(self, code: int, reason: str, policy: ClosePolicy) -> None:
        self.code = code
        self.reason = reason
        self.policy = policy
        super().__init__(f"gateway closed with {code} {policy.name}: {reason or policy.cause}")
