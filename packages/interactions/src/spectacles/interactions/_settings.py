"""Ingress settings, read from the environment once, in the entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from spectacles.broker.settings import (
    DEFAULT_AMQP_URL,
    DEFAULT_GROUP,
    AmqpUrlError,
    BrokerSettings,
)
from spectacles.observability import parse_address

from ._signature import public_key_from_hex

__all__ = ["ConfigError", "IngressSettings"]

DEFAULT_ADDRESS: Final = "0.0.0.0:8090"
#: Discord fails an interaction not answered within 3 s; the deferred answer must leave in time.
DEFAULT_RESPONSE_TIMEOUT: Final = 2.5
DEFAULT_MAX_AGE: Final = 300.0


class ConfigError(ValueError):
    """A setting is missing or invalid; ``key`` names the environment variable."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass(frozen=True, slots=True)
class IngressSettings:
    """Where the ingress listens, whose signatures it accepts, and where it publishes."""

    public_key: str
    address: str = DEFAULT_ADDRESS
    amqp_url: str = field(default=DEFAULT_AMQP_URL, repr=False)  # comma-separated on a cluster
    group: str = DEFAULT_GROUP
    amqp_url_order: str = "shuffle"
    response_timeout: float = DEFAULT_RESPONSE_TIMEOUT
    max_age: float = DEFAULT_MAX_AGE
    shard_count: int = 1

    def __post_init__(self) -> None:
        try:
            public_key_from_hex(self.public_key)
        except ValueError as exc:
            raise ConfigError("DISCORD_PUBLIC_KEY", str(exc).split(" ", 1)[1]) from None
        try:
            parse_address(self.address)
        except ValueError as exc:
            raise ConfigError("INTERACTIONS_ADDRESS", str(exc)) from None
        try:
            self.broker  # noqa: B018 - validates AMQP_URL and BROKER_GROUP
        except AmqpUrlError as exc:
            raise ConfigError(exc.key, exc.problem) from None
        except ValueError as exc:
            key = "BROKER_GROUP" if str(exc).startswith("BROKER_GROUP") else "AMQP_URL"
            raise ConfigError(key, str(exc).split(" ", 1)[1]) from None
        if not 0 < self.response_timeout < 3:
            raise ConfigError(
                "INTERACTIONS_RESPONSE_TIMEOUT",
                f"{self.response_timeout} must be between 0 and 3 seconds (Discord's limit)",
            )
        if self.max_age <= 0:
            raise ConfigError("INTERACTIONS_MAX_AGE", f"{self.max_age} must be > 0 seconds")
        if self.shard_count < 1:
            raise ConfigError("DISCORD_SHARD_COUNT", f"{self.shard_count} must be >= 1")

    @property
    def broker(self) -> BrokerSettings:
        """The RabbitMQ part."""
        return BrokerSettings(
            amqp_url=self.amqp_url, group=self.group, url_order=self.amqp_url_order
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngressSettings:
        """Every setting from ``environ`` (default ``os.environ``); empty means default."""
        env = os.environ if environ is None else environ
        key = (env.get("DISCORD_PUBLIC_KEY") or "").strip()
        if not key:
            raise ConfigError(
                "DISCORD_PUBLIC_KEY",
                "is not set; copy the application's Public Key from the Developer Portal",
            )
        return cls(
            public_key=key,
            address=env.get("INTERACTIONS_ADDRESS") or DEFAULT_ADDRESS,
            amqp_url=env.get("AMQP_URL") or DEFAULT_AMQP_URL,
            group=env.get("BROKER_GROUP") or DEFAULT_GROUP,
            amqp_url_order=env.get("AMQP_URL_ORDER") or "shuffle",
            response_timeout=_number(
                env, "INTERACTIONS_RESPONSE_TIMEOUT", DEFAULT_RESPONSE_TIMEOUT
            ),
            max_age=_number(env, "INTERACTIONS_MAX_AGE", DEFAULT_MAX_AGE),
            shard_count=int(_number(env, "DISCORD_SHARD_COUNT", 1)),
        )


def _number(env: Mapping[str, str], key: str, default: float) -> float:
    raw = (env.get(key) or "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(key, f"{raw!r} is not a number") from None
