"""Raid-guard settings from the ``RAID_*`` environment variables; a bad value names its variable."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Final


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


# The lowest value of each number (inclusive); the others must be > 0.
_LOWEST: Final = {"join_threshold": 2, "min_account_age_days": 0, "timeout_minutes": 1}
_POSITIVE: Final = ("window_seconds", "cooldown_seconds", "restore_retry_seconds")
_HIGHEST: Final = {"timeout_minutes": 28 * 24 * 60}  # Discord's longest timeout, 28 days
_EXPECTED: Final = {"action": "alert|timeout|kick|ban", "modlog_channels": "guild:channel,..."}


@dataclass(frozen=True, slots=True)
class RaidConfig:
    """When a burst of joins is a raid, and how to react; each field is ``RAID_<FIELD>``."""

    join_threshold: int = 10
    window_seconds: float = 10.0
    cooldown_seconds: float = 600.0
    restore_retry_seconds: float = 30.0
    action: RaidAction = RaidAction.ALERT
    min_account_age_days: float = 7.0
    timeout_minutes: int = 60
    modlog_channel_id: int | None = None
    modlog_channels: Mapping[int, int] = field(default_factory=dict)
    modlog_channel_name: str = "mod-log"

    def __post_init__(self) -> None:
        for name in (*_LOWEST, *_POSITIVE):
            value, low = getattr(self, name), _LOWEST.get(name, 0)
            bad = (value == low and name in _POSITIVE) or value > _HIGHEST.get(name, math.inf)
            # nan passes no comparison, and inf would never end a window or a cooldown
            if bad or not (math.isfinite(value) and value >= low):
                limits = f"{'above' if name in _POSITIVE else 'at least'} {low}"
                limits += f", at most {_HIGHEST[name]}" if name in _HIGHEST else ""
                raise RaidConfigError(_key(name), f"{value} must be a finite number {limits}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RaidConfig:
        """Read the ``RAID_*`` variables; unset or empty means the default."""
        env = os.environ if environ is None else environ
        values = {
            f.name: _parse(f.name, env[_key(f.name)]) for f in fields(cls) if env.get(_key(f.name))
        }
        return cls(**values)


def _key(name: str) -> str:
    return f"RAID_{name.upper()}"


def _parse(name: str, text: str) -> Any:
    text = text.strip()
    try:
        if name == "action":
            return RaidAction(text.lower())
        if name == "modlog_channel_name":
            return text.lstrip("#")
        if name == "modlog_channels":
            pairs = (item.split(":") for item in text.split(",") if item.strip())
            return {int(guild): int(channel) for guild, channel in pairs}
        if name == "modlog_channel_id":
            return int(text)
        return int(text) if name in ("join_threshold", "timeout_minutes") else float(text)
    except ValueError:
        expected = _EXPECTED.get(name, "a Discord id" if "channel" in name else "a number")
        raise RaidConfigError(_key(name), f"{text!r} must be {expected}") from None
