"""Worker settings, read from the environment once, in the entry point.

Every knob an operator turns without a code change lives here; options that belong to the bot's
design (single-active-consumer, attempts) are arguments of ``Worker`` instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, cast

from spectacles.broker._endpoints import AmqpUrlError
from spectacles.broker.settings import DEFAULT_AMQP_URL, DEFAULT_GROUP, BrokerSettings
from spectacles.observability import parse_address
from spectacles.rest import DEFAULT_API_URL
from spectacles.settings import (
    Secret,
    SettingError,
    SettingsReader,
    choice,
    integer,
    listing,
    seconds,
    secret,
    snowflake,
    string,
    validate,
)

__all__ = ["DEFAULT_API_URL", "QueueType", "WorkerConfigError", "WorkerSettings"]

# Prefetch bounds how many handlers run at once (and how many unacked messages a replica holds).
# 64: a handler awaiting ~100 ms of I/O gets ~640 events/s per replica (16 gave 160), and fast
# handlers are not held back by RabbitMQ's turnaround of a small window (bench figure 5); RabbitMQ
# still deals deliveries round-robin among replicas with room. Lower it for huge events
# (GUILD_CREATE of big guilds) or CPU-bound handlers, which gain nothing from more in flight.
DEFAULT_CONCURRENCY: Final = 64
DEFAULT_METRICS_ADDRESS: Final = "0.0.0.0:8080"
# Discord fails an interaction not answered within 3 s; deferring at 2.5 s leaves the defer
# itself half a second to arrive.
DEFAULT_COMMAND_DEFER_AFTER: Final = 2.5
# Seconds in-flight handlers get after SIGTERM before they are cancelled and their messages go
# back to the queue. Closing the channel and the connection can take up to ~10 s more when the
# broker is slow, so 15 s stays inside Compose's stop_grace_period (30 s) before its SIGKILL.
DEFAULT_DRAIN_TIMEOUT: Final = 15.0

QueueType = Literal["quorum", "classic"]
# One parser per bounded setting, used by from_env and by __post_init__ (settings built in code).
_CONCURRENCY: Final = integer(ge=1, le=65535)
_QUEUE_TYPE: Final = choice("quorum", "classic")
_LOG_LEVEL: Final = choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMAT: Final = choice("auto", "json", "console")
# Discord's limit for the first answer is 3 s.
_DEFER_AFTER: Final = seconds(gt=0, lt=3)
# Keep it ~10 s below the container's stop grace period.
_DRAIN_TIMEOUT: Final = seconds(gt=0, le=3600)


class WorkerConfigError(SettingError):
    """A setting is missing or invalid; ``key`` names the environment variable to fix."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker process needs to reach RabbitMQ and Discord, and how it reports."""

    discord_token: str = field(repr=False)
    amqp_url: str = field(default=DEFAULT_AMQP_URL, repr=False)  # may carry a password
    amqp_url_order: str = "shuffle"  # how to pick among several AMQP_URL nodes
    group: str = DEFAULT_GROUP
    discord_api_url: str = DEFAULT_API_URL
    concurrency: int = DEFAULT_CONCURRENCY
    queue_type: QueueType = "quorum"
    log_level: str = "INFO"
    log_format: str = ""
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    # The REST proxy's shared secret (REST_PROXY_AUTH), sent as X-Spectacles-Proxy-Auth.
    rest_proxy_auth: str = field(default="", repr=False)
    application_id: int | None = None
    command_guild_ids: tuple[int, ...] = ()
    command_defer_after: float = DEFAULT_COMMAND_DEFER_AFTER
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT

    def __post_init__(self) -> None:
        if not self.discord_token.strip():
            raise WorkerConfigError(
                "DISCORD_TOKEN",
                "is empty; set the bot token (or the simulator's token, e.g. sim-token)",
            )
        try:
            self.broker  # noqa: B018 - validates AMQP_URL and BROKER_GROUP with their own messages
        except AmqpUrlError as exc:
            raise WorkerConfigError(exc.key, exc.problem) from exc
        except SettingError as exc:
            raise WorkerConfigError(exc.key, exc.problem) from exc
        if not self.discord_api_url.startswith(("http://", "https://")):
            raise WorkerConfigError(
                "DISCORD_API_URL", f"{self.discord_api_url!r} is not an http(s) URL"
            )
        validate("WORKER_CONCURRENCY", _CONCURRENCY, self.concurrency, WorkerConfigError)
        validate("WORKER_QUEUE_TYPE", _QUEUE_TYPE, self.queue_type, WorkerConfigError)
        validate("LOG_LEVEL", _LOG_LEVEL, self.log_level, WorkerConfigError)
        if self.log_format:
            validate("LOG_FORMAT", _LOG_FORMAT, self.log_format, WorkerConfigError)
        try:
            parse_address(self.metrics_address)
        except ValueError as exc:
            raise WorkerConfigError("METRICS_ADDRESS", str(exc)) from exc
        validate("COMMANDS_DEFER_AFTER", _DEFER_AFTER, self.command_defer_after, WorkerConfigError)
        validate("WORKER_DRAIN_TIMEOUT", _DRAIN_TIMEOUT, self.drain_timeout, WorkerConfigError)

    @property
    def broker(self) -> BrokerSettings:
        """The RabbitMQ part, in the broker package's own type."""
        return BrokerSettings(
            amqp_url=self.amqp_url, group=self.group, url_order=self.amqp_url_order
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read every setting from ``environ`` (default ``os.environ``); empty means default."""
        env = SettingsReader(os.environ if environ is None else environ, error=WorkerConfigError)
        token = env.var("DISCORD_TOKEN", secret(), Secret(""))
        if not token:
            raise WorkerConfigError(
                "DISCORD_TOKEN",
                "is not set; put the bot token in the environment (.env for compose), "
                "or the simulator's token (sim-token) with DISCORD_API_URL pointing at it",
            )
        return cls(
            discord_token=token.reveal(),
            application_id=env.var("DISCORD_APPLICATION_ID", snowflake(), None),
            command_guild_ids=env.var("COMMANDS_GUILD_IDS", listing(snowflake(), spaces=True), ()),
            command_defer_after=env.var(
                "COMMANDS_DEFER_AFTER", _DEFER_AFTER, DEFAULT_COMMAND_DEFER_AFTER
            ),
            amqp_url=env.var("AMQP_URL", string(), DEFAULT_AMQP_URL),
            amqp_url_order=env.var("AMQP_URL_ORDER", string(), "shuffle"),
            group=env.var("BROKER_GROUP", string(), DEFAULT_GROUP),
            discord_api_url=env.var("DISCORD_API_URL", string(), DEFAULT_API_URL),
            concurrency=env.var("WORKER_CONCURRENCY", _CONCURRENCY, DEFAULT_CONCURRENCY),
            queue_type=cast(QueueType, env.var("WORKER_QUEUE_TYPE", _QUEUE_TYPE, "quorum")),
            log_level=env.var("LOG_LEVEL", _LOG_LEVEL, "INFO"),
            log_format=env.var("LOG_FORMAT", _LOG_FORMAT, ""),
            metrics_address=env.var("METRICS_ADDRESS", string(), DEFAULT_METRICS_ADDRESS),
            rest_proxy_auth=env.var("REST_PROXY_AUTH", secret(), Secret("")).reveal(),
            drain_timeout=env.var("WORKER_DRAIN_TIMEOUT", _DRAIN_TIMEOUT, DEFAULT_DRAIN_TIMEOUT),
        )
