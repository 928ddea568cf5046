"""Raid-guard settings from the environment; every bad value names its variable."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

__all__ = ["RaidAction", "RaidConfig", "RaidConfigError"]

# Discord caps a timeout at 28 days.
MAX_TIMEOUT_MINUTES: Final = 28 * 24 * 60


class RaidAction(StrEnum):
    """What happens to young accounts that join during a raid."""

    ALERT = "alert"
    TIMEOUT = "timeout"
    KICK = "kick"
    BAN = "ban"


class RaidConfigError(ValueError):
    """A raid-guard setting is invalid; ``key`` is the environment variable to fix."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


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
        # nan passes every comparison below and inf never ends a window or a cooldown.
        for key, value in (
            ("RAID_WINDOW_SECONDS", self.window_seconds),
            ("RAID_COOLDOWN_SECONDS", self.cooldown_seconds),
            ("RAID_RESTORE_RETRY_SECONDS", self.restore_retry_seconds),
            ("RAID_MIN_ACCOUNT_AGE_DAYS", self.min_account_age_days),
        ):
            if not math.isfinite(value):
                raise RaidConfigError(key, f"{value} must be a finite number")
        if self.join_threshold < 2:
            raise RaidConfigError("RAID_JOIN_THRESHOLD", f"{self.join_threshold} must be >= 2")
        if self.window_seconds <= 0:
            raise RaidConfigError("RAID_WINDOW_SECONDS", f"{self.window_seconds} must be > 0")
        if self.cooldown_seconds <= 0:
            raise RaidConfigError("RAID_COOLDOWN_SECONDS", f"{self.cooldown_seconds} must be > 0")
        if self.restore_retry_seconds <= 0:
            raise RaidConfigError(
                "RAID_RESTORE_RETRY_SECONDS", f"{self.restore_retry_seconds} must be > 0"
            )
        if self.min_account_age_days < 0:
            raise RaidConfigError(
                "RAID_MIN_ACCOUNT_AGE_DAYS", f"{self.min_account_age_days} must be >= 0"
            )
        if not 1 <= self.timeout_minutes <= MAX_TIMEOUT_MINUTES:
            raise RaidConfigError(
                "RAID_TIMEOUT_MINUTES",
                f"{self.timeout_minutes} must be between 1 and {MAX_TIMEOUT_MINUTES} (28 days)",
            )

    def modlog_channel_for(self, guild_id: int) -> int | None:
        """The configured alert channel of ``guild_id`` (per-guild entry first), if any."""
        return self.modlog_channels.get(guild_id, self.modlog_channel_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RaidConfig:
        """Read the ``RAID_*`` variables; unset or empty means the default."""
        env = os.environ if environ is None else environ
        defaults = cls()
        action_text = (env.get("RAID_ACTION") or defaults.action.value).strip().lower()
        try:
            action = RaidAction(action_text)
        except ValueError:
            choices = "|".join(a.value for a in RaidAction)
            raise RaidConfigError("RAID_ACTION", f"{action_text!r} must be {choices}") from None
        modlog = env.get("RAID_MODLOG_CHANNEL_ID")
        return cls(
            join_threshold=_int(env, "RAID_JOIN_THRESHOLD", defaults.join_threshold),
            window_seconds=_float(env, "RAID_WINDOW_SECONDS", defaults.window_seconds),
            cooldown_seconds=_float(env, "RAID_COOLDOWN_SECONDS", defaults.cooldown_seconds),
            restore_retry_seconds=_float(
                env, "RAID_RESTORE_RETRY_SECONDS", defaults.restore_retry_seconds
            ),
            action=action,
            min_account_age_days=_float(
                env, "RAID_MIN_ACCOUNT_AGE_DAYS", defaults.min_account_age_days
            ),
            timeout_minutes=_int(env, "RAID_TIMEOUT_MINUTES", defaults.timeout_minutes),
            modlog_channel_id=_snowflake("RAID_MODLOG_CHANNEL_ID", modlog) if modlog else None,
            modlog_channels=_channel_map(env.get("RAID_MODLOG_CHANNELS") or ""),
            modlog_channel_name=(
                env.get("RAID_MODLOG_CHANNEL_NAME") or defaults.modlog_channel_name
            ).lstrip("#"),
        )


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    text = env.get(key)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise RaidConfigError(key, f"{text!r} is not a whole number") from None


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    text = env.get(key)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise RaidConfigError(key, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise RaidConfigError(key, f"{text!r} must be a finite number")
    return value


def _snowflake(key: str, text: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise RaidConfigError(key, f"{text!r} is not a Discord id (digits only)")
    return int(text)


def _channel_map(text: str) -> dict[int, int]:
    """Parse ``guild_id:channel_id,guild_id:channel_id``."""
    mapping: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        guild, sep, channel = item.partition(":")
        if not sep:
            raise RaidConfigError(
                "RAID_MODLOG_CHANNELS", f"{item!r} must look like guild_id:channel_id"
            )
        mapping[_snowflake("RAID_MODLOG_CHANNELS", guild)] = _snowflake(
            "RAID_MODLOG_CHANNELS", channel
        )
    return mapping
