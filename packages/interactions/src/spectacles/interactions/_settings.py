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
from spectacles.settings import SettingError, SettingsReader, integer, seconds, string, validate

from ._signature import public_key_from_hex

__all__ = ["ConfigError", "IngressSettings"]

DEFAULT_ADDRESS: Final = "0.0.0.0:8090"
#: Discord fails an interaction not answered within 3 s; the deferred answer must leave in time.
DEFAULT_RESPONSE_TIMEOUT: Final = 2.5
DEFAULT_MAX_AGE: Final = 300.0
DEFAULT_METRICS_ADDRESS: Final = "0.0.0.0:8080"


# Discord fails an interaction not answered within 3 s.
_RESPONSE_TIMEOUT: Final = seconds(gt=0, lt=3)
_MAX_AGE: Final = seconds(gt=0)
_SHARD_COUNT: Final = integer(ge=1)


class ConfigError(SettingError):
    """A setting is missing or invalid; ``key`` names the environment variable."""


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
    metrics_address: str = DEFAULT_METRICS_ADDRESS

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
            parse_address(self.metrics_address)
        except ValueError as exc:
            raise ConfigError("METRICS_ADDRESS", str(exc)) from None
        try:
            self.broker  # noqa: B018 - validates AMQP_URL and BROKER_GROUP
        except AmqpUrlError as exc:
            raise ConfigError(exc.key, exc.problem) from None
        except SettingError as exc:
            raise ConfigError(exc.key, exc.problem) from None
        validate(
            "INTERACTIONS_RESPONSE_TIMEOUT", _RESPONSE_TIMEOUT, self.response_timeout, ConfigError
        )
        validate("INTERACTIONS_MAX_AGE", _MAX_AGE, self.max_age, ConfigError)
        validate("DISCORD_SHARD_COUNT", _SHARD_COUNT, self.shard_count, ConfigError)

    @property
    def broker(self) -> BrokerSettings:
        """The RabbitMQ part."""
        return BrokerSettings(
            amqp_url=self.amqp_url, group=self.group, url_order=self.amqp_url_order
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngressSettings:
        """Every setting from ``environ`` (default ``os.environ``); empty means default."""
        env = SettingsReader(os.environ if environ is None else environ, error=ConfigError)
        key = env.var("DISCORD_PUBLIC_KEY", string(), "")
        if not key:
            raise ConfigError(
                "DISCORD_PUBLIC_KEY",
                "is not set; copy the application's Public Key from the Developer Portal",
            )
        return cls(
            public_key=key,
            address=env.var("INTERACTIONS_ADDRESS", string(), DEFAULT_ADDRESS),
            amqp_url=env.var("AMQP_URL", string(), DEFAULT_AMQP_URL),
            group=env.var("BROKER_GROUP", string(), DEFAULT_GROUP),
            amqp_url_order=env.var("AMQP_URL_ORDER", string(), "shuffle"),
            response_timeout=env.var(
                "INTERACTIONS_RESPONSE_TIMEOUT", _RESPONSE_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT
            ),
            max_age=env.var("INTERACTIONS_MAX_AGE", _MAX_AGE, DEFAULT_MAX_AGE),
            shard_count=env.var("DISCORD_SHARD_COUNT", _SHARD_COUNT, 1),
            metrics_address=env.var("METRICS_ADDRESS", string(), DEFAULT_METRICS_ADDRESS),
        )
