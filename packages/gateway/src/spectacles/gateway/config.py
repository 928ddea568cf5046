"""Validated, frozen gateway settings from `gateway.toml` plus environment overrides.

Everything is checked here, before any connection: an unknown key, an unknown intent or event
name, a bad shard spec or a missing token raises one `ConfigError` naming the key (and the valid
choices). Things that are legal but probably wrong (an event the intents cannot deliver) become
`GatewayConfig.warnings`, logged by the entry point. The environment is passed in, never read here.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from spectacles.broker.settings import ORDERS, AmqpEndpoints, AmqpUrlError
from spectacles.models import (
    ALL_INTENTS,
    DISPATCH_EVENTS,
    Intents,
    UnknownIntentError,
    intents_for_event,
)
from spectacles.rest import DEFAULT_API_URL  # one default for every Discord client here

from .errors import ConfigError

__all__ = [
    "COMPRESSIONS",
    "IDENTIFY_LOCKS",
    "SESSION_STORES",
    "Compression",
    "GatewayConfig",
    "GatewaySettings",
    "LogSettings",
    "MetricsSettings",
    "PresenceSettings",
    "SessionStoreSettings",
    "ShardSettings",
    "load_config",
    "parse_config",
    "parse_shard_ids",
]

Compression = Literal["zlib-stream", "zstd-stream", "none"]
SessionStoreType = Literal["amqp", "file", "none"]
IdentifyLock = Literal["amqp", "local"]

COMPRESSIONS: Final[tuple[str, ...]] = ("zlib-stream", "zstd-stream", "none")
SESSION_STORES: Final[tuple[str, ...]] = ("amqp", "file", "none")
IDENTIFY_LOCKS: Final[tuple[str, ...]] = ("amqp", "local")
CommandsQueueType = Literal["quorum", "classic"]
COMMANDS_QUEUE_TYPES: Final[tuple[str, ...]] = ("quorum", "classic")
STATUSES: Final[tuple[str, ...]] = ("online", "dnd", "idle", "invisible", "offline")
LOG_FORMATS: Final[tuple[str, ...]] = ("auto", "json", "console")
LOG_LEVELS: Final[tuple[str, ...]] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_AMQP_URL: Final = "amqp://guest:guest@localhost:5672/"
# Discord's largest documented shard count is in the thousands; a typo like "0-99999999" must
# not allocate a huge tuple.
MAX_SHARD_ID: Final = 1 << 16

# RabbitMQ 4's default max_message_size (3.x allowed 128 MiB): a larger event is never published.
DEFAULT_MAX_EVENT_SIZE: Final = 16 * 1024 * 1024
MIN_MAX_EVENT_SIZE: Final = 4096

# What RabbitMQ names (exchange, queue prefixes) accept safely; the broker package agrees.
GROUP_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")

# Environment variable -> the config key it overrides (named in errors).
ENV_KEYS: Final[Mapping[str, str]] = {
    "DISCORD_TOKEN": "token",
    "DISCORD_EVENTS": "events",
    "DISCORD_INTENTS": "intents",
    "DISCORD_SHARD_COUNT": "shards.count",
    "DISCORD_SHARD_IDS": "shards.ids",
    "DISCORD_API_URL": "gateway.api_url",
    "DISCORD_GATEWAY_URL": "gateway.url",
    "GATEWAY_IDENTIFY_LOCK": "gateway.identify_lock",
    "GATEWAY_COMMANDS_QUEUE_TYPE": "gateway.commands_queue_type",
    "GATEWAY_MAX_EVENT_SIZE": "gateway.max_event_size",
    "GATEWAY_CLEAR_FATAL_BLOCK": "gateway.clear_fatal_block",
    "AMQP_URL": "amqp.url",
    "AMQP_URL_ORDER": "amqp.url_order",
    "BROKER_GROUP": "broker.group",
    "LOG_LEVEL": "log.level",
    "LOG_FORMAT": "log.format",
}


@dataclass(frozen=True, slots=True)
class ShardSettings:
    """Which shards this process runs: `count` None means Discord's recommendation."""

    count: int | None = None
    ids: tuple[int, ...] | None = None

    def resolve(self, recommended: int) -> tuple[int, tuple[int, ...]]:
        """Shard count and the ids to run, once /gateway/bot told the recommended count."""
        count = self.count or recommended
        ids = self.ids if self.ids is not None else tuple(range(count))
        bad = [i for i in ids if i >= count]
        if bad:
            raise ConfigError("shards.ids", f"shard id(s) {bad} >= shard count {count}")
        return count, ids


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Discord connection settings; the timings are configurable so tests run fast."""

    url: str | None = None
    api_url: str = DEFAULT_API_URL
    compress: Compression = "zlib-stream"
    large_threshold: int = 50
    identify_interval: float = 5.0
    # Whose turn it is in an identify bucket: "amqp" across every gateway process sharing the
    # bot (through RabbitMQ), "local" within this process only.
    identify_lock: IdentifyLock = "amqp"
    # Each shard's commands queue: "quorum" survives a node of a RabbitMQ cluster; "classic"
    # costs far less per queue (a bot with thousands of shards on one node).
    commands_queue_type: CommandsQueueType = "quorum"
    # IDENTIFYs of the daily quota never spent (at least 1: Discord resets a token at 0).
    identify_reserve: int = 5
    # After a fatal close (4004, 4010-4014) this token does not IDENTIFY for this long (0: off),
    # however often the process restarts; `clear_fatal_block` lifts such a block at start.
    fatal_block: float = 600.0
    clear_fatal_block: bool = False
    invalid_session_delay: tuple[float, float] = (1.0, 5.0)
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_in_flight: int = 1024
    # Bounds against hostile or broken servers (see transport.py): a websocket message (as
    # received, compressed or not) and a whole inflated payload. Discord's largest real
    # payloads, GUILD_CREATE of huge guilds, are several MiB: 64 MiB is ample headroom.
    max_message_size: int = 64 * 1024 * 1024
    max_payload_size: int = 64 * 1024 * 1024
    # Bytes; a dispatch body larger than this goes to `{group}.oversize` instead of the events
    # exchange. Keep it at or below RabbitMQ's `max_message_size`.
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Where /healthz, /readyz and /metrics listen; `enabled = false` turns them off."""

    address: str = "0.0.0.0:8080"
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class SessionStoreSettings:
    """Where each shard's resume point is kept between runs."""

    type: SessionStoreType = "amqp"
    ttl: float = 120.0
    save_interval: float = 5.0
    path: str = "gateway-sessions.json"


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    """The presence sent in IDENTIFY."""

    status: str = "online"
    afk: bool = False
    activity_name: str | None = None
    activity_type: int = 0

    def to_payload(self) -> dict[str, Any]:
        """The IDENTIFY `presence` object."""
        activities = []
        if self.activity_name:
            activities.append({"name": self.activity_name, "type": self.activity_type})
        return {"since": None, "activities": activities, "status": self.status, "afk": self.afk}


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Log level and format (`auto`: JSON unless stderr is a terminal)."""

    level: str = "INFO"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole, validated configuration of one gateway process."""

    token: str = field(repr=False)
    events: frozenset[str]
    intents: Intents
    amqp_url: str = field(default=DEFAULT_AMQP_URL, repr=False)  # comma-separated for a cluster
    amqp_url_order: str = "shuffle"
    broker_group: str = "gateway"
    shards: ShardSettings = ShardSettings()
    gateway: GatewaySettings = GatewaySettings()
    metrics: MetricsSettings = MetricsSettings()
    session_store: SessionStoreSettings = SessionStoreSettings()
    presence: PresenceSettings = PresenceSettings()
    log: LogSettings = LogSettings()
    warnings: tuple[str, ...] = ()

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as TOML-like data, with every secret hidden."""
        return {
            "token": "[REDACTED]",
            "events": sorted(self.events),
            "intents": sorted(i.name or str(i.value) for i in Intents if i in self.intents),
            "intents_value": int(self.intents),
            "broker": {"type": "amqp", "group": self.broker_group},
            "amqp": {
                "urls": [redact_url(url) for url in self.amqp_url.split(",")],
                "url_order": self.amqp_url_order,
            },
            "shards": {
                "count": self.shards.count or 0,
                "ids": "all" if self.shards.ids is None else format_shard_ids(self.shards.ids),
            },
            "gateway": {
                "url": self.gateway.url or "",
                "api_url": self.gateway.api_url,
                "compress": self.gateway.compress,
                "large_threshold": self.gateway.large_threshold,
                "identify_interval": self.gateway.identify_interval,
                "identify_lock": self.gateway.identify_lock,
                "commands_queue_type": self.gateway.commands_queue_type,
                "identify_reserve": self.gateway.identify_reserve,
                "fatal_block": self.gateway.fatal_block,
                "clear_fatal_block": self.gateway.clear_fatal_block,
                "invalid_session_delay": list(self.gateway.invalid_session_delay),
                "backoff_base": self.gateway.backoff_base,
                "backoff_max": self.gateway.backoff_max,
                "max_in_flight": self.gateway.max_in_flight,
                "max_message_size": self.gateway.max_message_size,
                "max_payload_size": self.gateway.max_payload_size,
                "max_event_size": self.gateway.max_event_size,
            },
            "metrics": {"address": self.metrics.address, "enabled": self.metrics.enabled},
            "session_store": {
                "type": self.session_store.type,
                "ttl": self.session_store.ttl,
                "save_interval": self.session_store.save_interval,
                "path": self.session_store.path,
            },
            "presence": {
                "status": self.presence.status,
                "afk": self.presence.afk,
                "activity_name": self.presence.activity_name or "",
                "activity_type": self.presence.activity_type,
            },
            "log": {"level": self.log.level, "format": self.log.format},
        }


def redact_url(url: str) -> str:
    """`url` with its password replaced, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:[REDACTED]@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def parse_shard_ids(spec: str | Iterable[int], key: str = "shards.ids") -> tuple[int, ...]:
    """Parse `"0-3,8"` (or a list of ints) into sorted unique shard ids."""
    ids: set[int] = set()
    if isinstance(spec, str):
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                raise ConfigError(key, f"empty item in shard spec {spec!r} (expected e.g. '0-3,8')")
            low_text, dash, high_text = part.partition("-")
            try:
                low = int(low_text)
                high = int(high_text) if dash else low
            except ValueError:
                raise ConfigError(
                    key, f"bad shard spec item {part!r} (expected 'N' or 'N-M', e.g. '0-3,8')"
                ) from None
            if low < 0 or high < low or high >= MAX_SHARD_ID:
                raise ConfigError(key, f"bad shard range {part!r} (need 0 <= N <= M)")
            ids.update(range(low, high + 1))
    else:
        for item in spec:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < MAX_SHARD_ID:
                raise ConfigError(key, f"shard id {item!r} is not a non-negative integer")
            ids.add(item)
    if not ids:
        raise ConfigError(key, "no shard ids given")
    return tuple(sorted(ids))


def format_shard_ids(ids: Iterable[int]) -> str:
    """The inverse of `parse_shard_ids`: `(0, 1, 2, 3, 8)` -> `"0-3,8"`."""
    ordered = sorted(ids)
    ranges: list[str] = []
    if not ordered:
        return ""
    start = prev = ordered[0]
    for current in ordered[1:]:
        if current != prev + 1:
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
            start = current
        prev = current
    ranges.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(ranges)


_T = TypeVar("_T")


class _Section:
    """A TOML table being read: takes known keys, then rejects leftovers by name."""

    def __init__(self, data: Any, prefix: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(prefix.rstrip("."), "must be a table")
        self._data: dict[str, Any] = dict(data)
        self._prefix = prefix
        self._known: list[str] = []

    def key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def take(self, name: str, kind: Callable[[str, Any], _T], default: _T) -> _T:
        self._known.append(name)
        if name not in self._data:
            return default
        return kind(self.key(name), self._data.pop(name))

    def section(self, name: str) -> _Section:
        self._known.append(name)
        return _Section(self._data.pop(name, {}), f"{self._prefix}{name}.")

    def finish(self) -> None:
        if self._data:
            unknown = sorted(self._data)[0]
            raise ConfigError(self.key(unknown), "unknown key", self._known)


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {type(value).__name__}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def _flag(key: str, value: Any) -> bool:
    """A boolean from TOML, or from the environment as 1/0, true/false, yes/no."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes"):
            return True
        if text in ("0", "false", "no"):
            return False
        raise ConfigError(key, f"expected true or false (1/0), got {value!r}")
    return _bool(key, value)


def _int(key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value}")
    return value


def _positive_int(key: str, value: Any) -> int:
    return _int(key, value, minimum=1)


# A size bound below this would refuse ordinary gateway payloads (READY alone can be larger).
MIN_SIZE_BOUND: Final = 64 * 1024


def _size_bound(key: str, value: Any) -> int:
    return _int(key, value, minimum=MIN_SIZE_BOUND)


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(key, f"must be a finite number >= 0, got {value}")
    return float(value)


def _choice(choices: tuple[str, ...], *, upper: bool = False) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        text = _str(key, value)
        text = text.upper() if upper else text.lower()
        if text not in choices:
            raise ConfigError(key, f"unknown value {value!r}", choices)
        return text

    return check


def _names(key: str, value: Any) -> list[str]:
    """A list of names, from a TOML array or a comma-separated string (environment)."""
    if isinstance(value, str):
        return [n.strip().upper() for n in value.split(",") if n.strip()]
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ConfigError(key, "expected a list of names")
    return [n.strip().upper() for n in value]


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A typo's likely intent, so the fix is in the first line of the error, not the list."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _events(key: str, value: Any) -> frozenset[str]:
    names = _names(key, value)
    unknown = [n for n in names if n not in DISPATCH_EVENTS]
    if unknown:
        raise ConfigError(
            key,
            f"unknown event {unknown[0]!r}{_did_you_mean(unknown[0], DISPATCH_EVENTS)}",
            sorted(DISPATCH_EVENTS),
        )
    if not names:
        raise ConfigError(key, "no events configured: nothing would be relayed")
    return frozenset(names)


def _intents(key: str, value: Any) -> Intents:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value & ~int(ALL_INTENTS):
            raise ConfigError(key, f"intent bits {value} include undefined bits")
        return Intents(value)
    if isinstance(value, str) and value.strip().isdigit():
        return _intents(key, int(value.strip()))
    try:
        return Intents.from_names(_names(key, value))
    except UnknownIntentError as exc:
        bad = exc.unknown[0] if exc.unknown else f"bits {exc.unknown_bits}"
        names = [i.name for i in Intents if i.name]
        hint = _did_you_mean(str(bad).upper(), names)
        raise ConfigError(key, f"unknown intent {bad!r}{hint}", names) from None


def _delay_range(key: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError(key, f"expected [min, max] seconds, got {value!r}")
    low, high = _seconds(key, value[0]), _seconds(key, value[1])
    if high < low:
        raise ConfigError(key, f"max {high} < min {low}")
    return low, high


def _url(schemes: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        text = _str(key, value).strip()
        if urlsplit(text).scheme not in schemes or not urlsplit(text).netloc:
            raise ConfigError(key, "not a valid URL", [f"{s}://..." for s in schemes])
        return text

    return check


def _optional_url(schemes: tuple[str, ...]) -> Callable[[str, Any], str | None]:
    check = _url(schemes)

    def optional(key: str, value: Any) -> str | None:
        return check(key, value) if _str(key, value).strip() else None

    return optional


def _shard_count(key: str, value: Any) -> int | None:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ConfigError(key, f"expected an integer, got {value!r}") from None
    count = _int(key, value)
    return count or None


def _shard_ids(key: str, value: Any) -> tuple[int, ...] | None:
    if isinstance(value, str) and value.strip().lower() in ("", "all"):
        return None
    if not isinstance(value, str | list):
        raise ConfigError(key, f"expected a spec like '0-3,8' or a list of ids, got {value!r}")
    return parse_shard_ids(value, key)


def _amqp_urls(amqp: _Section) -> str:
    """The broker nodes, comma-joined and validated.

    `amqp.url` holds one URL or several comma-separated (AMQP_URL lands there), `amqp.urls` a list
    of a cluster's nodes; `amqp.url` wins when both are set.
    """
    listed = amqp.take("urls", _str_list, None)
    single = amqp.take("url", _str, None)
    key, value = "amqp.url", cast(str | list[str], single or DEFAULT_AMQP_URL)
    if listed is not None and single is None:
        key, value = "amqp.urls", listed
    try:
        return ",".join(AmqpEndpoints.parse(value, key=key).urls)
    except AmqpUrlError as exc:
        raise ConfigError(exc.key, exc.problem) from None


def _str_list(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(key, 'expected a list of URLs, e.g. ["amqp://rabbit-1//"]')
    return cast(list[str], value)


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay the environment variables onto the file's data (environment wins)."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for variable, dotted in ENV_KEYS.items():
        value = env.get(variable)
        if value is None or value == "":
            continue
        table, _, name = dotted.rpartition(".")
        target = merged
        if table:
            existing = merged.get(table)
            target = dict(existing) if isinstance(existing, dict) else {}
            merged[table] = target
        target[name] = value
    return merged


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Validate already-parsed TOML `data` with `env` overrides into a `GatewayConfig`."""
    root = _Section(_apply_env(dict(data), env or {}), "")
    token = root.take("token", _str, "").strip()
    if token.lower().startswith("bot "):
        token = token[4:].strip()
    if not token:
        raise ConfigError("token", "missing: set `token` in gateway.toml or DISCORD_TOKEN")
    events: frozenset[str] = root.take("events", _events, frozenset())
    if not events:
        raise ConfigError("events", 'missing: list the dispatch names to relay, e.g. ["READY"]')
    intents = root.take("intents", _intents, Intents(0))

    broker = root.section("broker")
    broker.take("type", _choice(("amqp",)), "amqp")
    group = broker.take("group", _str, "gateway").strip()
    if not GROUP_PATTERN.match(group):
        raise ConfigError(
            "broker.group",
            f"{group!r} is not a valid group: use letters, digits and . _ : - "
            "(it names the events exchange and prefixes every queue)",
        )
    broker.finish()

    amqp = root.section("amqp")
    amqp_url = _amqp_urls(amqp)
    amqp_url_order = amqp.take("url_order", _choice(ORDERS), "shuffle")
    amqp.finish()

    shards_section = root.section("shards")
    shards = ShardSettings(
        count=shards_section.take("count", _shard_count, None),
        ids=shards_section.take("ids", _shard_ids, None),
    )
    shards_section.finish()
    if shards.count is not None and shards.ids is not None:
        bad = [i for i in shards.ids if i >= shards.count]
        if bad:
            raise ConfigError("shards.ids", f"shard id(s) {bad} >= shards.count {shards.count}")

    gw = root.section("gateway")
    defaults = GatewaySettings()
    gateway = GatewaySettings(
        url=gw.take("url", _optional_url(("ws", "wss")), None),
        api_url=gw.take("api_url", _url(("http", "https")), DEFAULT_API_URL).rstrip("/"),
        compress=cast(Compression, gw.take("compress", _choice(COMPRESSIONS), "zlib-stream")),
        large_threshold=gw.take("large_threshold", _int, defaults.large_threshold),
        identify_interval=gw.take("identify_interval", _seconds, defaults.identify_interval),
        identify_lock=cast(IdentifyLock, gw.take("identify_lock", _choice(IDENTIFY_LOCKS), "amqp")),
        commands_queue_type=cast(
            CommandsQueueType,
            gw.take("commands_queue_type", _choice(COMMANDS_QUEUE_TYPES), "quorum"),
        ),
        identify_reserve=gw.take("identify_reserve", _positive_int, defaults.identify_reserve),
        fatal_block=gw.take("fatal_block", _seconds, defaults.fatal_block),
        clear_fatal_block=gw.take("clear_fatal_block", _flag, False),
        invalid_session_delay=gw.take(
            "invalid_session_delay", _delay_range, defaults.invalid_session_delay
        ),
        backoff_base=gw.take("backoff_base", _seconds, defaults.backoff_base),
        backoff_max=gw.take("backoff_max", _seconds, defaults.backoff_max),
        max_in_flight=gw.take("max_in_flight", _positive_int, defaults.max_in_flight),
        max_message_size=gw.take("max_message_size", _size_bound, defaults.max_message_size),
        max_payload_size=gw.take("max_payload_size", _size_bound, defaults.max_payload_size),
        max_event_size=gw.take("max_event_size", _int, defaults.max_event_size),
    )
    gw.finish()
    if gateway.max_event_size < MIN_MAX_EVENT_SIZE:
        raise ConfigError(
            "gateway.max_event_size",
            f"must be at least {MIN_MAX_EVENT_SIZE} bytes (it is a size in bytes, e.g. 16777216)",
        )
    if not 50 <= gateway.large_threshold <= 250:
        raise ConfigError("gateway.large_threshold", "must be between 50 and 250")

    metrics_section = root.section("metrics")
    metrics = MetricsSettings(
        address=metrics_section.take("address", _address, "0.0.0.0:8080"),
        enabled=metrics_section.take("enabled", _bool, True),
    )
    metrics_section.finish()

    store_section = root.section("session_store")
    store_defaults = SessionStoreSettings()
    session_store = SessionStoreSettings(
        type=cast(SessionStoreType, store_section.take("type", _choice(SESSION_STORES), "amqp")),
        ttl=store_section.take("ttl", _seconds, store_defaults.ttl),
        save_interval=store_section.take("save_interval", _seconds, store_defaults.save_interval),
        path=store_section.take("path", _str, store_defaults.path),
    )
    store_section.finish()

    presence_section = root.section("presence")
    presence = PresenceSettings(
        status=presence_section.take("status", _choice(STATUSES), "online"),
        afk=presence_section.take("afk", _bool, False),
        activity_name=presence_section.take("activity_name", _str, "") or None,
        activity_type=presence_section.take("activity_type", _int, 0),
    )
    presence_section.finish()

    log_section = root.section("log")
    log = LogSettings(
        level=log_section.take("level", _choice(LOG_LEVELS, upper=True), "INFO"),
        format=log_section.take("format", _choice(LOG_FORMATS), "auto"),
    )
    log_section.finish()
    root.finish()

    return GatewayConfig(
        token=token,
        events=events,
        intents=intents,
        amqp_url=amqp_url,
        amqp_url_order=amqp_url_order,
        broker_group=group,
        shards=shards,
        gateway=gateway,
        metrics=metrics,
        session_store=session_store,
        presence=presence,
        log=log,
        warnings=tuple(_warnings(events, intents)),
    )


def _address(key: str, value: Any) -> str:
    text = _str(key, value).strip()
    _host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"expected 'host:port', got {value!r}")
    return text


def _warnings(events: frozenset[str], intents: Intents) -> list[str]:
    """Legal settings that are probably mistakes: events the intents cannot deliver."""
    found = []
    for event in sorted(events):
        gate = intents_for_event(event)
        if gate and not gate & intents:
            needed = " or ".join(i.name or str(int(i)) for i in Intents if i in gate)
            found.append(f"event {event} can never arrive: intents lack {needed}")
    message_events = {"MESSAGE_CREATE", "MESSAGE_UPDATE"} & events
    if message_events and Intents.MESSAGE_CONTENT not in intents:
        found.append(
            f"{', '.join(sorted(message_events))} without the MESSAGE_CONTENT intent: `content` "
            "will be empty except in DMs and messages that mention the bot"
        )
    return found


def load_config(path: Path | None, env: Mapping[str, str]) -> GatewayConfig:
    """Read `path` (optional when the environment carries everything) and validate it."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("--config", f"file {str(path)!r} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, env)
