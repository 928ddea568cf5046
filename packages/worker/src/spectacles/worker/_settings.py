"""Worker settings, read from the environment once, in the entry point.

Every knob an operator turns without a code change lives here; options that belong to the bot's
design (single-active-consumer, attempts) are arguments of ``Worker`` instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from spectacles.broker._endpoints import AmqpUrlError
from spectacles.broker.settings import DEFAULT_AMQP_URL, DEFAULT_GROUP, BrokerSettings
from spectacles.observability import parse_address

__all__ = ["DEFAULT_API_URL", "QueueType", "WorkerConfigError", "WorkerSettings"]

DEFAULT_API_URL: Final = "https://discord.com/api/v10"
# Prefetch bounds how many handlers run at once; 16 keeps a REST-bound worker busy without
# hoarding messages that another replica could take.
DEFAULT_CONCURRENCY: Final = 16
DEFAULT_METRICS_ADDRESS: Final = "0.0.0.0:8080"
# Discord fails an interaction not answered within 3 s; deferring at 2.5 s leaves the defer
# itself half a second to arrive.
DEFAULT_COMMAND_DEFER_AFTER: Final = 2.5
# Seconds in-flight handlers get after SIGTERM before they are cancelled and their messages go
# back to the queue. Closing the channel and the connection can take up to ~10 s more when the
# broker is slow, so 15 s stays inside Compose's stop_grace_period (30 s) before its SIGKILL.
DEFAULT_DRAIN_TIMEOUT: Final = 15.0

QueueType = Literal["quorum", "classic"]
_QUEUE_TYPES: Final = ("quorum", "classic")
_LOG_FORMATS: Final = ("", "auto", "json", "console")
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class WorkerConfigError(ValueError):
    """A setting is missing or invalid; ``key`` names the environment variable to fix."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


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
        except ValueError as exc:
            key = "BROKER_GROUP" if str(exc).startswith("BROKER_GROUP") else "AMQP_URL"
            raise WorkerConfigError(key, str(exc).split(" ", 1)[1]) from exc
        if not self.discord_api_url.startswith(("http://", "https://")):
            raise WorkerConfigError(
                "DISCORD_API_URL", f"{self.discord_api_url!r} is not an http(s) URL"
            )
        if not 1 <= self.concurrency <= 65535:
            raise WorkerConfigError(
                "WORKER_CONCURRENCY", f"{self.concurrency} must be between 1 and 65535"
            )
        if self.queue_type not in _QUEUE_TYPES:
            raise WorkerConfigError(
                "WORKER_QUEUE_TYPE", f"{self.queue_type!r} must be one of {', '.join(_QUEUE_TYPES)}"
            )
        if self.log_level.upper() not in _LOG_LEVELS:
            raise WorkerConfigError(
                "LOG_LEVEL", f"{self.log_level!r} must be one of {', '.join(_LOG_LEVELS)}"
            )
        if self.log_format.lower() not in _LOG_FORMATS:
            raise WorkerConfigError(
                "LOG_FORMAT", f"{self.log_format!r} must be auto, json or console"
            )
        try:
            parse_address(self.metrics_address)
        except ValueError as exc:
            raise WorkerConfigError("METRICS_ADDRESS", str(exc)) from exc
        if not 0 < self.command_defer_after < 3:
            raise WorkerConfigError(
                "COMMANDS_DEFER_AFTER",
                f"{self.command_defer_after} must be between 0 and 3 seconds (Discord's limit)",
            )
        if not 0 < self.drain_timeout <= 3600:
            raise WorkerConfigError(
                "WORKER_DRAIN_TIMEOUT",
                f"{self.drain_timeout} must be a number of seconds above 0 (at most 3600); "
                "keep it ~10 s below the container's stop grace period",
            )

    @property
    def broker(self) -> BrokerSettings:
        """The RabbitMQ part, in the broker package's own type."""
        return BrokerSettings(
            amqp_url=self.amqp_url, group=self.group, url_order=self.amqp_url_order
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read every setting from ``environ`` (default ``os.environ``); empty means default."""
        env = os.environ if environ is None else environ
        token = env.get("DISCORD_TOKEN", "")
        if not token:
            raise WorkerConfigError(
                "DISCORD_TOKEN",
                "is not set; put the bot token in the environment (.env for compose), "
                "or the simulator's token (sim-token) with DISCORD_API_URL pointing at it",
            )
        concurrency_text = env.get("WORKER_CONCURRENCY") or str(DEFAULT_CONCURRENCY)
        try:
            concurrency = int(concurrency_text)
        except ValueError:
            raise WorkerConfigError(
                "WORKER_CONCURRENCY", f"{concurrency_text!r} is not a whole number"
            ) from None
        queue_type = (env.get("WORKER_QUEUE_TYPE") or "quorum").lower()
        if queue_type not in _QUEUE_TYPES:
            raise WorkerConfigError(
                "WORKER_QUEUE_TYPE", f"{queue_type!r} must be one of {', '.join(_QUEUE_TYPES)}"
            )
        drain_text = env.get("WORKER_DRAIN_TIMEOUT") or str(DEFAULT_DRAIN_TIMEOUT)
        try:
            drain_timeout = float(drain_text)
        except ValueError:
            raise WorkerConfigError(
                "WORKER_DRAIN_TIMEOUT", f"{drain_text!r} is not a number of seconds"
            ) from None
        return cls(
            discord_token=token,
            application_id=_snowflake(env, "DISCORD_APPLICATION_ID"),
            command_guild_ids=tuple(
                _snowflake({"COMMANDS_GUILD_IDS": part}, "COMMANDS_GUILD_IDS") or 0
                for part in (env.get("COMMANDS_GUILD_IDS") or "").replace(",", " ").split()
            ),
            command_defer_after=_seconds(env, "COMMANDS_DEFER_AFTER", DEFAULT_COMMAND_DEFER_AFTER),
            amqp_url=env.get("AMQP_URL") or DEFAULT_AMQP_URL,
            amqp_url_order=env.get("AMQP_URL_ORDER") or "shuffle",
            group=env.get("BROKER_GROUP") or DEFAULT_GROUP,
            discord_api_url=env.get("DISCORD_API_URL") or DEFAULT_API_URL,
            concurrency=concurrency,
            queue_type="classic" if queue_type == "classic" else "quorum",
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            log_format=(env.get("LOG_FORMAT") or "").lower(),
            metrics_address=env.get("METRICS_ADDRESS") or DEFAULT_METRICS_ADDRESS,
            rest_proxy_auth=env.get("REST_PROXY_AUTH", "").strip(),
            drain_timeout=drain_timeout,
        )


def _snowflake(env: Mapping[str, str], key: str) -> int | None:
    raw = (env.get(key) or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise WorkerConfigError(key, f"{raw!r} is not a Discord id (digits only)")
    return int(raw)


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    raw = (env.get(key) or "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise WorkerConfigError(key, f"{raw!r} is not a number of seconds") from None
