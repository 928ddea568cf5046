"""Validated, frozen gateway settings from `gateway.toml` plus environment overrides.

Everything is checked here, before any connection: an unknown key, an unknown intent or event
name, a bad shard spec or a missing token raises one `ConfigError` naming the key (and the valid
choices). Things that are legal but probably wrong (an event the intents cannot deliver) become
`GatewayConfig.warnings`, logged by the entry point. The environment is passed in, never read here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast
from urllib.parse import urlsplit

from spectacles.broker.settings import ORDERS, AmqpEndpoints, AmqpUrlError, redact_url
from spectacles.models import (
    ALL_INTENTS,
    DISPATCH_EVENTS,
    Intents,
    UnknownIntentError,
    intents_for_event,
)
from spectacles.observability import LOG_FORMATS, LOG_LEVELS
from spectacles.rest import DEFAULT_API_URL
from spectacles.settings import (
    Invalid,
    Parser,
    Secret,
    SettingsReader,
    boolean,
    choice,
    integer,
    listing,
    path,
    read_toml,
    seconds,
    secret,
    string,
    suggest,
)

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
DEFAULT_AMQP_URL: Final = "amqp://guest:guest@localhost:5672/"
# Discord's largest documented shard count is in the thousands; a typo like "0-99999999" must
# not allocate a huge tuple.
MAX_SHARD_ID: Final = 1 << 16

# RabbitMQ 4's default max_message_size (3.x allowed 128 MiB): a larger event is never published.
DEFAULT_MAX_EVENT_SIZE: Final = 16 * 1024 * 1024
MIN_MAX_EVENT_SIZE: Final = 4096

# What RabbitMQ names (exchange, queue prefixes) accept safely; the broker package agrees.
GROUP_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


@dataclass(frozen=True, slots=True)
class ShardSettings:
    """Which shards this process runs: `count` None means Discord's recommendation."""

    count: int | None = None
    ids: tuple[int, ...] | None = None
    # `ids = "auto"`: the live processes of the group share the shards out (see cluster.py).
    auto: bool = False

    def resolve(self, recommended: int) -> tuple[int, tuple[int, ...]]:
        """Shard count and the ids to run (auto: the ids it may run), once the count is known."""
        count = self.count or recommended
        ids = self.ids if self.ids is not None else tuple(range(count))
        bad = [i for i in ids if i >= count]
        if bad:
            raise ConfigError("shards.ids", f"shard id(s) {bad} >= shard count {count}")
        return count, ids


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Timing of the gateway cluster (`shards.ids = "auto"`); see docs/operations.md.

    A process announces itself every `heartbeat_interval`; a peer unheard for `member_timeout` is
    gone and its shards are claimed. A shard lease's holder notices its own loss within
    `lease_timeout` (its AMQP heartbeat is `lease_heartbeat`), so a claimant waits that long plus
    a second before it starts a claimed shard: a cut-off owner has stopped by then. Shards are
    handed over only once the member set was unchanged for `settle`.
    """

    heartbeat_interval: float = 1.0
    member_timeout: float = 3.0
    lease_heartbeat: int = 2
    lease_timeout: float = 2.0
    settle: float = 2.0

    @property
    def takeover_delay(self) -> float:
        """How long a claimant waits before running a shard whose lease it just took."""
        return self.lease_timeout + 1.0


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
    cluster: ClusterSettings = ClusterSettings()
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
                "ids": "auto"
                if self.shards.auto
                else "all"
                if self.shards.ids is None
                else format_shard_ids(self.shards.ids),
            },
            "cluster": {
                "heartbeat_interval": self.cluster.heartbeat_interval,
                "member_timeout": self.cluster.member_timeout,
                "lease_heartbeat": self.cluster.lease_heartbeat,
                "lease_timeout": self.cluster.lease_timeout,
                "settle": self.cluster.settle,
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


# A size bound below this would refuse ordinary gateway payloads (READY alone can be larger).
MIN_SIZE_BOUND: Final = 64 * 1024

_NAMES: Final = listing(string(upper=True))


def _events(value: object) -> frozenset[str]:
    names = _NAMES(value)
    unknown = [n for n in names if n not in DISPATCH_EVENTS]
    if unknown:
        raise Invalid(
            f"unknown event {unknown[0]!r}{suggest(unknown[0], DISPATCH_EVENTS)}",
            sorted(DISPATCH_EVENTS),
        )
    if not names:
        raise Invalid("no events configured: nothing would be relayed")
    return frozenset(names)


def _intents(value: object) -> Intents:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value & ~int(ALL_INTENTS):
            raise Invalid(f"intent bits {value} include undefined bits")
        return Intents(value)
    try:
        return Intents.from_names(_NAMES(value))
    except UnknownIntentError as exc:
        bad = exc.unknown[0] if exc.unknown else f"bits {exc.unknown_bits}"
        names = [i.name for i in Intents if i.name]
        raise Invalid(f"unknown intent {bad!r}{suggest(str(bad).upper(), names)}", names) from None


def _delay_range(value: object) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise Invalid(f"expected [min, max] seconds, got {value!r}")
    low, high = seconds()(value[0]), seconds()(value[1])
    if high < low:
        raise Invalid(f"max {high} < min {low}")
    return low, high


def _url(*schemes: str) -> Parser[str]:
    def check(value: object) -> str:
        text = string()(value)
        if urlsplit(text).scheme not in schemes or not urlsplit(text).netloc:
            raise Invalid("not a valid URL", [f"{s}://..." for s in schemes])
        return text

    return check


def _optional_url(*schemes: str) -> Parser[str | None]:
    check = _url(*schemes)

    def optional(value: object) -> str | None:
        return check(value) if string()(value) else None

    return optional


AUTO: Final = "auto"


def _shard_ids(value: object) -> tuple[int, ...] | Literal["auto"] | None:
    if isinstance(value, str) and value.strip().lower() in ("", "all"):
        return None
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if not isinstance(value, str | list):
        raise Invalid(f"expected a spec like '0-3,8' or a list of ids, got {value!r}")
    try:
        return parse_shard_ids(value)
    except ConfigError as exc:
        raise Invalid(exc.problem) from None


def _str_list(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Invalid('expected a list of URLs, e.g. ["amqp://rabbit-1//"]')
    return cast(list[str], value)


def _address(value: object) -> str:
    text = string()(value)
    _host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise Invalid(f"expected 'host:port', got {value!r}")
    return text


def _amqp_urls(amqp: SettingsReader, env: Mapping[str, str]) -> str:
    """The broker nodes, comma-joined and validated.

    `amqp.url` holds one URL or several comma-separated (AMQP_URL lands there), `amqp.urls` a list
    of a cluster's nodes; `amqp.url` wins when both are set.
    """
    listed = amqp.take("urls", _str_list, None)
    single = amqp.take("url", string(), None, env="AMQP_URL")
    key, value = "amqp.url", cast(str | list[str], single or DEFAULT_AMQP_URL)
    if listed is not None and single is None:
        key, value = "amqp.urls", listed
    try:
        return ",".join(AmqpEndpoints.parse(value, key=key).urls)
    except AmqpUrlError as exc:
        from_env = "AMQP_URL" if key == "amqp.url" and env.get("AMQP_URL") else None
        raise ConfigError(exc.key, exc.problem, env=from_env) from None


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Validate already-parsed TOML `data` with `env` overrides into a `GatewayConfig`."""
    env = env or {}
    root = SettingsReader(env, data, error=ConfigError)
    token = root.take("token", secret(), Secret(""), env="DISCORD_TOKEN").reveal()
    if token.lower().startswith("bot "):
        token = token[4:].strip()
    if not token:
        raise ConfigError("token", "missing: set `token` in gateway.toml or DISCORD_TOKEN")
    events: frozenset[str] = root.take("events", _events, frozenset(), env="DISCORD_EVENTS")
    if not events:
        raise ConfigError("events", 'missing: list the dispatch names to relay, e.g. ["READY"]')
    intents = root.take("intents", _intents, Intents(0), env="DISCORD_INTENTS")

    broker = root.section("broker")
    broker.take("type", choice("amqp"), "amqp")
    group = broker.take("group", string(), "gateway", env="BROKER_GROUP")
    if not GROUP_PATTERN.match(group):
        raise ConfigError(
            "broker.group",
            f"{group!r} is not a valid group: use letters, digits and . _ : - "
            "(it names the events exchange and prefixes every queue)",
        )
    broker.finish()

    amqp = root.section("amqp")
    amqp_url = _amqp_urls(amqp, env)
    amqp_url_order = amqp.take("url_order", choice(*ORDERS), "shuffle", env="AMQP_URL_ORDER")
    amqp.finish()

    shards_section = root.section("shards")
    ids = shards_section.take("ids", _shard_ids, None, env="DISCORD_SHARD_IDS")
    shards = ShardSettings(
        count=shards_section.take("count", integer(ge=0), 0, env="DISCORD_SHARD_COUNT") or None,
        ids=None if ids == AUTO else ids,
        auto=ids == AUTO,
    )
    shards_section.finish()
    cluster = _cluster_settings(root.section("cluster"))
    if shards.count is not None and shards.ids is not None:
        bad = [i for i in shards.ids if i >= shards.count]
        if bad:
            raise ConfigError("shards.ids", f"shard id(s) {bad} >= shards.count {shards.count}")

    gw = root.section("gateway")
    defaults = GatewaySettings()
    size_bound = integer(ge=MIN_SIZE_BOUND)
    api_url = gw.take("api_url", _url("http", "https"), DEFAULT_API_URL, env="DISCORD_API_URL")
    gateway = GatewaySettings(
        url=gw.take("url", _optional_url("ws", "wss"), None, env="DISCORD_GATEWAY_URL"),
        api_url=api_url.rstrip("/"),
        compress=cast(Compression, gw.take("compress", choice(*COMPRESSIONS), "zlib-stream")),
        large_threshold=gw.take(
            "large_threshold", integer(ge=50, le=250), defaults.large_threshold
        ),
        identify_interval=gw.take("identify_interval", seconds(), defaults.identify_interval),
        identify_lock=cast(
            IdentifyLock,
            gw.take("identify_lock", choice(*IDENTIFY_LOCKS), "amqp", env="GATEWAY_IDENTIFY_LOCK"),
        ),
        commands_queue_type=cast(
            CommandsQueueType,
            gw.take(
                "commands_queue_type",
                choice(*COMMANDS_QUEUE_TYPES),
                "quorum",
                env="GATEWAY_COMMANDS_QUEUE_TYPE",
            ),
        ),
        identify_reserve=gw.take("identify_reserve", integer(ge=1), defaults.identify_reserve),
        fatal_block=gw.take("fatal_block", seconds(), defaults.fatal_block),
        clear_fatal_block=gw.take(
            "clear_fatal_block", boolean(), False, env="GATEWAY_CLEAR_FATAL_BLOCK"
        ),
        invalid_session_delay=gw.take(
            "invalid_session_delay", _delay_range, defaults.invalid_session_delay
        ),
        backoff_base=gw.take("backoff_base", seconds(), defaults.backoff_base),
        backoff_max=gw.take("backoff_max", seconds(), defaults.backoff_max),
        max_in_flight=gw.take("max_in_flight", integer(ge=1), defaults.max_in_flight),
        max_message_size=gw.take("max_message_size", size_bound, defaults.max_message_size),
        max_payload_size=gw.take("max_payload_size", size_bound, defaults.max_payload_size),
        # Bytes, e.g. 16777216.
        max_event_size=gw.take(
            "max_event_size",
            integer(ge=MIN_MAX_EVENT_SIZE),
            defaults.max_event_size,
            env="GATEWAY_MAX_EVENT_SIZE",
        ),
    )
    gw.finish()

    metrics_section = root.section("metrics")
    metrics = MetricsSettings(
        address=metrics_section.take("address", _address, "0.0.0.0:8080"),
        enabled=metrics_section.take("enabled", boolean(), True),
    )
    metrics_section.finish()

    store_section = root.section("session_store")
    store_defaults = SessionStoreSettings()
    session_store = SessionStoreSettings(
        type=cast(SessionStoreType, store_section.take("type", choice(*SESSION_STORES), "amqp")),
        ttl=store_section.take("ttl", seconds(), store_defaults.ttl),
        save_interval=store_section.take("save_interval", seconds(), store_defaults.save_interval),
        path=str(store_section.take("path", path(), Path(store_defaults.path))),
    )
    store_section.finish()

    presence_section = root.section("presence")
    presence = PresenceSettings(
        status=presence_section.take("status", choice(*STATUSES), "online"),
        afk=presence_section.take("afk", boolean(), False),
        activity_name=presence_section.take("activity_name", string(), "") or None,
        activity_type=presence_section.take("activity_type", integer(ge=0), 0),
    )
    presence_section.finish()

    log_section = root.section("log")
    log = LogSettings(
        level=log_section.take("level", choice(*LOG_LEVELS), "INFO", env="LOG_LEVEL"),
        format=log_section.take("format", choice(*LOG_FORMATS), "auto", env="LOG_FORMAT"),
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
        cluster=cluster,
        gateway=gateway,
        metrics=metrics,
        session_store=session_store,
        presence=presence,
        log=log,
        warnings=tuple(_warnings(events, intents) + _cluster_warnings(shards, session_store)),
    )


def _cluster_settings(section: SettingsReader) -> ClusterSettings:
    defaults = ClusterSettings()
    cluster = ClusterSettings(
        heartbeat_interval=section.take(
            "heartbeat_interval", seconds(), defaults.heartbeat_interval
        ),
        member_timeout=section.take("member_timeout", seconds(), defaults.member_timeout),
        lease_heartbeat=section.take(
            "lease_heartbeat", integer(ge=1, le=60), defaults.lease_heartbeat
        ),
        lease_timeout=section.take("lease_timeout", seconds(), defaults.lease_timeout),
        settle=section.take("settle", seconds(), defaults.settle),
    )
    section.finish()
    if not 0 < cluster.heartbeat_interval * 2 <= cluster.member_timeout:
        raise ConfigError(
            "cluster.member_timeout",
            f"{cluster.member_timeout}s must be at least twice cluster.heartbeat_interval "
            f"({cluster.heartbeat_interval}s), or one late announcement drops a live peer",
        )
    if cluster.lease_timeout <= 0:
        raise ConfigError("cluster.lease_timeout", "must be positive (seconds)")
    return cluster


def _cluster_warnings(shards: ShardSettings, store: SessionStoreSettings) -> list[str]:
    """Auto-mode settings that work on one process and break a cluster of them."""
    if not shards.auto:
        return []
    found = []
    if shards.count is None:
        found.append(
            'shards.ids = "auto" without shards.count (DISCORD_SHARD_COUNT): each process takes '
            "Discord's recommendation when it starts, and processes that got different counts "
            "form separate clusters that each run every shard; pin the count"
        )
    if store.type != "amqp":
        found.append(
            f'shards.ids = "auto" with session_store.type = "{store.type}": a shard that moves '
            'to another process cannot RESUME and IDENTIFYs again; use "amqp"'
        )
    return found


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
    return parse_config(read_toml(path, "--config", ConfigError), env)
