"""Raid-guard settings from the environment; every bad value names its variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from spectacles.settings import (
    Invalid,
    SettingError,
    SettingsReader,
    enum,
    integer,
    listing,
    number,
    seconds,
    snowflake,
    string,
    validate,
)

__all__ = ["RaidAction", "RaidConfig", "RaidConfigError"]

# Discord caps a timeout at 28 days.
MAX_TIMEOUT_MINUTES: Final = 28 * 24 * 60


class RaidAction(StrEnum):
    """What happens to young accounts that join during a raid."""

    ALERT = "alert"
    TIMEOUT = "timeout"
    KICK = "kick"
    BAN = "ban"


class RaidConfigError(SettingError):
    """A raid-guard setting is invalid; ``key`` is the environment variable to fix."""


_THRESHOLD: Final = integer(ge=2)
_POSITIVE_SECONDS: Final = seconds(gt=0)
_AGE_DAYS: Final = number(ge=0)
_TIMEOUT_MINUTES: Final = integer(ge=1, le=MAX_TIMEOUT_MINUTES)
_NO_CHANNELS: Final[tuple[tuple[int, int], ...]] = ()


def _guild_channel(value: object) -> tuple[int, int]:
    """One ``guild_id:channel_id`` pair."""
    guild, sep, channel = str(value).partition(":")
    if not sep:
        raise Invalid(f"{value!r} must look like guild_id:channel_id")
    return snowflake()(guild), snowflake()(channel)


_CHANNEL_MAP: Final = listing(_guild_channel)


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
    """A restore that failed at Discord is tried again after this long (5 tries in all)."""
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
        for key, parse, value in (
            ("RAID_JOIN_THRESHOLD", _THRESHOLD, self.join_threshold),
            ("RAID_WINDOW_SECONDS", _POSITIVE_SECONDS, self.window_seconds),
            ("RAID_COOLDOWN_SECONDS", _POSITIVE_SECONDS, self.cooldown_seconds),
            ("RAID_RESTORE_RETRY_SECONDS", _POSITIVE_SECONDS, self.restore_retry_seconds),
            ("RAID_MIN_ACCOUNT_AGE_DAYS", _AGE_DAYS, self.min_account_age_days),
            ("RAID_TIMEOUT_MINUTES", _TIMEOUT_MINUTES, self.timeout_minutes),
        ):
            validate(key, parse, value, RaidConfigError)

    def modlog_channel_for(self, guild_id: int) -> int | None:
        """The configured alert channel of ``guild_id`` (per-guild entry first), if any."""
        return self.modlog_channels.get(guild_id, self.modlog_channel_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RaidConfig:
        """Read the ``RAID_*`` variables; unset or empty means the default."""
        env = SettingsReader(os.environ if environ is None else environ, error=RaidConfigError)
        d = cls()
        return cls(
            join_threshold=env.var("RAID_JOIN_THRESHOLD", _THRESHOLD, d.join_threshold),
            window_seconds=env.var("RAID_WINDOW_SECONDS", _POSITIVE_SECONDS, d.window_seconds),
            cooldown_seconds=env.var(
                "RAID_COOLDOWN_SECONDS", _POSITIVE_SECONDS, d.cooldown_seconds
            ),
            restore_retry_seconds=env.var(
                "RAID_RESTORE_RETRY_SECONDS", _POSITIVE_SECONDS, d.restore_retry_seconds
            ),
            action=env.var("RAID_ACTION", enum(RaidAction), d.action),
            min_account_age_days=env.var(
                "RAID_MIN_ACCOUNT_AGE_DAYS", _AGE_DAYS, d.min_account_age_days
            ),
            timeout_minutes=env.var("RAID_TIMEOUT_MINUTES", _TIMEOUT_MINUTES, d.timeout_minutes),
            modlog_channel_id=env.var("RAID_MODLOG_CHANNEL_ID", snowflake(), None),
            modlog_channels=dict(env.var("RAID_MODLOG_CHANNELS", _CHANNEL_MAP, _NO_CHANNELS)),
            modlog_channel_name=env.var(
                "RAID_MODLOG_CHANNEL_NAME", string(), d.modlog_channel_name
            ).lstrip("#"),
        )
