"""Raid-guard settings from the environment; every bad value names its variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from spectacles import settings

__all__ = ["RaidAction", "RaidConfig", "RaidConfigError"]

# Discord caps a timeout at 28 days.
MAX_TIMEOUT_MINUTES: Final = 28 * 24 * 60


class RaidAction(StrEnum):
    """What happens to young accounts that join during a raid."""

    ALERT = "alert"
    TIMEOUT = "timeout"
    KICK = "kick"
    BAN = "ban"


class RaidConfigError(settings.SettingError):
    """A raid-guard setting is invalid; ``key`` is the environment variable to fix."""


def _guild_channel(value: object) -> tuple[int, int]:
    guild, sep, channel = str(value).partition(":")
    if not sep:
        raise settings.Invalid(f"{value!r} must look like guild_id:channel_id")
    return settings.snowflake()(guild), settings.snowflake()(channel)


_pairs: Final = settings.listing(_guild_channel)
# Every field is read from RAID_<FIELD>; the numbers are checked again when built in code.
_PARSERS: Final[dict[str, settings.Parser[Any]]] = {
    "join_threshold": settings.integer(ge=2),
    "window_seconds": settings.seconds(gt=0),
    "cooldown_seconds": settings.seconds(gt=0),
    "restore_retry_seconds": settings.seconds(gt=0),
    "min_account_age_days": settings.number(ge=0),
    "timeout_minutes": settings.integer(ge=1, le=MAX_TIMEOUT_MINUTES),
    "action": settings.enum(RaidAction),
    "modlog_channel_id": settings.snowflake(),
    "modlog_channels": lambda value: dict(_pairs(value)),
    "modlog_channel_name": lambda value: settings.string()(value).lstrip("#"),
}
_NUMBERS: Final = tuple(_PARSERS)[:6]


def _key(name: str) -> str:
    return f"RAID_{name.upper()}"


@dataclass(frozen=True, slots=True)
class RaidConfig:
    """When a burst of joins is a raid, and how to react."""

    join_threshold: int = 10
    """A raid is this many joins (or more) ..."""
    window_seconds: float = 10.0
    """... whose join times fit within this many seconds."""
    cooldown_seconds: float = 600.0
    """A raid is over after this long without a join; then verification is restored."""
    restore_retry_seconds: float = 30.0
    """A restore that failed at Discord is tried again after this long."""
    action: RaidAction = RaidAction.ALERT
    min_account_age_days: float = 7.0
    """The action only hits accounts younger than this (at join time)."""
    timeout_minutes: int = 60
    modlog_channel_id: int | None = None
    """Where alerts go for every guild without its own entry in ``modlog_channels``."""
    modlog_channels: Mapping[int, int] = field(default_factory=dict)
    """Per-guild alert channel: guild id -> channel id."""
    modlog_channel_name: str = "mod-log"
    """Without a configured id, the guild's text channel of this name gets the alert."""

    def __post_init__(self) -> None:
        for name in _NUMBERS:
            settings.validate(_key(name), _PARSERS[name], getattr(self, name), RaidConfigError)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RaidConfig:
        """Read the ``RAID_*`` variables; unset or empty means the default."""
        env = settings.SettingsReader(
            os.environ if environ is None else environ, error=RaidConfigError
        )
        values = {name: env.var(_key(name), parse, None) for name, parse in _PARSERS.items()}
        return cls(**{name: value for name, value in values.items() if value is not None})
