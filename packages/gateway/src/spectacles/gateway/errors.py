"""Typed errors of the gateway service.

Hierarchy (code branches on these types, never on message text)::

    GatewayError
    ├── ConfigError             bad configuration; the process exits with code 2
    ├── IdentifyRefused         this process must not IDENTIFY now (the shard stops)
    │   ├── IdentifyLimitExceeded   session_start_limit cannot cover the shards to start
    │   └── IdentifyBlocked         a fatal close blocks this token (see fatal_block.py)
    ├── GatewayUnreachable      /gateway/bot failed before any shard could start
    └── TransportError          the websocket failed or closed
        └── ServerClosed        Discord closed it with a close code (policy attached)
"""

from __future__ import annotations

from spectacles.models import ClosePolicy
from spectacles.settings import SettingError

__all__ = [
    "ConfigError",
    "GatewayError",
    "GatewayUnreachable",
    "IdentifyBlocked",
    "IdentifyLimitExceeded",
    "IdentifyRefused",
    "ServerClosed",
    "TransportError",
]


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


class ConfigError(GatewayError, SettingError):
    """A configuration value is missing or invalid; `key` names it, `env` the variable it came from.

    The text is the one format of every service: ``DISCORD_SHARD_COUNT (shards.count): ...``.
    """


class IdentifyRefused(GatewayError):
    """An IDENTIFY must not be sent now; the shard that wanted it stops."""


class IdentifyLimitExceeded(IdentifyRefused):
    """Starting `wanted` sessions would spend Discord's IDENTIFY quota below `reserve`."""

    def __init__(self, wanted: int, remaining: int, reset_after_ms: int, reserve: int = 1) -> None:
        self.wanted = wanted
        self.remaining = remaining
        self.reset_after_ms = reset_after_ms
        self.reserve = reserve
        super().__init__(
            f"refusing to IDENTIFY {wanted} shard(s): session_start_limit.remaining is "
            f"{remaining} and {reserve} of it is never spent (gateway.identify_reserve), so at "
            f"most {max(remaining - reserve, 0)} may start (resets in "
            f"{reset_after_ms / 1000:.0f} s); exhausting it resets the bot token. Wait for the "
            "reset, or run fewer shards in this process."
        )


class IdentifyBlocked(IdentifyRefused):
    """A recent fatal close (4004, 4010-4014) forbids IDENTIFY with this token for a while."""

    def __init__(self, code: int, name: str, cause: str, fix: str, retry_in: float) -> None:
        self.code = code
        self.name = name
        self.cause = cause
        self.fix = fix
        self.retry_in = retry_in
        super().__init__(
            f"IDENTIFY blocked for {retry_in:.0f} s more: Discord closed with {code} {name} "
            f"({cause}). Fix: {fix}. A new token lifts the block; so does "
            "GATEWAY_CLEAR_FATAL_BLOCK=1 or `spectacles-gateway unblock` once fixed."
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
