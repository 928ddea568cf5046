"""Simulator settings: world size, protocol timings and limits, all overridable for fast tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from spectacles.models import PRIVILEGED_INTENTS, Intents
from spectacles.settings import SettingError

__all__ = [
    "DEFAULT_ROUTE_LIMITS",
    "RouteLimit",
    "SimulatorConfig",
    "SimulatorConfigError",
]


class SimulatorConfigError(SettingError):
    """A configuration value is out of range; `key` names it and the message says how to fix it."""

    def __init__(self, key: str, value: object, fix: str) -> None:
        self.value = value
        self.fix = fix
        super().__init__(key, f"{fix}, got {value!r}")


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """A REST bucket: `limit` requests per `per` seconds for each major parameter value."""

    limit: int
    per: float


# Route templates use Discord's parameter names so the major parameter can be read off them.
# The values mirror what Discord reports for a typical bot; tests pass smaller ones to force 429s.
DEFAULT_ROUTE_LIMITS: Final[Mapping[str, RouteLimit]] = MappingProxyType(
    {
        "POST /channels/{channel_id}/messages": RouteLimit(5, 5.0),
        "GET /channels/{channel_id}/messages": RouteLimit(5, 5.0),
        "PATCH /guilds/{guild_id}/members/{user_id}": RouteLimit(10, 10.0),
        "DELETE /guilds/{guild_id}/members/{user_id}": RouteLimit(5, 5.0),
        "PUT /guilds/{guild_id}/bans/{user_id}": RouteLimit(5, 5.0),
        "DELETE /guilds/{guild_id}/bans/{user_id}": RouteLimit(5, 5.0),
        "PATCH /guilds/{guild_id}": RouteLimit(5, 5.0),
    }
)


def _default_route_limits() -> Mapping[str, RouteLimit]:
    return DEFAULT_ROUTE_LIMITS


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulator can be told; the defaults behave like Discord.

    Timings are in seconds unless the name says `_ms` (Discord reports heartbeat intervals in ms).
    """

    token: str = "sim-token"
    seed: int = 1
    guilds: int = 2
    members_per_guild: int = 20
    channels_per_guild: int = 3
    shards: int = 1
    max_concurrency: int = 1
    identify_interval: float = 5.0
    heartbeat_interval_ms: int = 41250
    # A session is closed (4000, resumable) when no heartbeat came for interval * this factor.
    heartbeat_timeout_factor: float = 1.5
    session_ttl: float = 180.0
    replay_buffer_size: int = 20_000
    privileged_intents: Intents = PRIVILEGED_INTENTS
    session_start_total: int = 1000
    session_start_reset_ms: int = 86_400_000
    gateway_payload_limit: int = 120
    gateway_payload_window: float = 60.0
    max_guilds_per_shard: int = 2500
    route_limits: Mapping[str, RouteLimit] = field(default_factory=_default_route_limits)
    default_route_limit: RouteLimit = RouteLimit(50, 1.0)
    global_rate_limit: int = 50
    rate_limits_enabled: bool = True
    system_join_messages: bool = True
    # Level 1: clients inflate any level, and a flood must not be slowed by deflate effort.
    zlib_level: int = 1
    bot_username: str = "Spectacles"
    public_url: str | None = None
    # Interactions: the initial response deadline and the token's lifetime (Discord: 3 s, 15 min).
    interaction_response_timeout: float = 3.0
    interaction_token_ttl: float = 900.0
    # Outgoing-webhook mode: POST interactions here (signed) instead of dispatching them.
    interactions_url: str | None = None

    def __post_init__(self) -> None:
        """Reject values that would make the simulator misbehave, naming the setting."""
        if not self.token or any(c.isspace() for c in self.token):
            raise SimulatorConfigError(
                "token", "[REDACTED]", "use a non-empty token without spaces"
            )
        positive_ints = {
            "shards": self.shards,
            "max_concurrency": self.max_concurrency,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "replay_buffer_size": self.replay_buffer_size,
            "gateway_payload_limit": self.gateway_payload_limit,
            "max_guilds_per_shard": self.max_guilds_per_shard,
            "global_rate_limit": self.global_rate_limit,
        }
        for key, value in positive_ints.items():
            if value < 1:
                raise SimulatorConfigError(key, value, "must be at least 1")
        for key, count in {
            "guilds": self.guilds,
            "members_per_guild": self.members_per_guild,
        }.items():
            if count < 0:
                raise SimulatorConfigError(key, count, "must be 0 or more")
        if self.channels_per_guild < 2:
            raise SimulatorConfigError(
                "channels_per_guild",
                self.channels_per_guild,
                "must be at least 2 (a system channel and #mod-log)",
            )
        positive_floats = {
            "identify_interval": self.identify_interval,
            "session_ttl": self.session_ttl,
            "gateway_payload_window": self.gateway_payload_window,
            "heartbeat_timeout_factor": self.heartbeat_timeout_factor,
            "interaction_response_timeout": self.interaction_response_timeout,
            "interaction_token_ttl": self.interaction_token_ttl,
        }
        for key, seconds in positive_floats.items():
            if seconds < 0:
                raise SimulatorConfigError(key, seconds, "must not be negative")
        if not 0 <= self.zlib_level <= 9:
            raise SimulatorConfigError("zlib_level", self.zlib_level, "use 0..9")
        for route, limit in self.route_limits.items():
            if limit.limit < 1 or limit.per <= 0:
                raise SimulatorConfigError(
                    f"route_limits[{route!r}]", limit, "limit must be >= 1 and per > 0"
                )
        if self.public_url is not None and "://" not in self.public_url:
            raise SimulatorConfigError(
                "public_url", self.public_url, "use a full URL such as http://simulator:8000"
            )

        if self.interactions_url is not None and "://" not in self.interactions_url:
            raise SimulatorConfigError(
                "interactions_url",
                self.interactions_url,
                "use a full URL such as http://127.0.0.1:8080/interactions",
            )

    def route_limit(self, route: str) -> RouteLimit:
        """The limit for a route template, or the default bucket when none is configured."""
        return self.route_limits.get(route, self.default_route_limit)
