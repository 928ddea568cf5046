"""The text of a raid alert: what moderators need to decide in one glance."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from spectacles.workers.raid_guard.config import RaidAction, RaidConfig
from spectacles.workers.raid_guard.detector import Joiner, Raid

__all__ = ["VERIFICATION_NAMES", "format_age", "raid_alert"]

VERIFICATION_NAMES: Final = {0: "NONE", 1: "LOW", 2: "MEDIUM", 3: "HIGH", 4: "VERY_HIGH"}
# Keep the alert well under Discord's 2,000 characters however big the raid.
_MAX_LISTED: Final = 15
ALERT_TITLE: Final = "Raid detected"


def format_age(age: timedelta) -> str:
    """``3 h``, ``2.5 d``, ``412 d``: precise for young accounts, short for old ones."""
    hours = age.total_seconds() / 3600
    if hours < 1:
        return f"{max(0, round(hours * 60))} min"
    if hours < 48:
        return f"{hours:.0f} h"
    days = hours / 24
    return f"{days:.1f} d" if days < 30 else f"{days:.0f} d"


def raid_alert(
    raid: Raid,
    config: RaidConfig,
    *,
    verification: str,
    young: Sequence[Joiner],
) -> str:
    """The alert: join count and window, what was done, and the joiners' account ages."""
    joiners = raid.joiners
    ages = sorted(j.account_age for j in joiners)
    lines = [
        f"\N{POLICE CARS REVOLVING LIGHT} **{ALERT_TITLE}**: {len(joiners)} members joined "
        f"within {_seconds(raid.span)} (threshold: {config.join_threshold} "
        f"in {config.window_seconds:g} s).",
        verification,
        _action_line(config, len(young), len(joiners)),
        f"Account ages: youngest {format_age(ages[0])}, "
        f"median {format_age(statistics.median_low(ages))}, oldest {format_age(ages[-1])}.",
        "Joiners (newest account first):",
    ]
    for joiner in sorted(joiners, key=lambda j: j.account_age)[:_MAX_LISTED]:
        name = f" {joiner.name}" if joiner.name else ""
        lines.append(f"- <@{joiner.user_id}>{name}: account {format_age(joiner.account_age)} old")
    if len(joiners) > _MAX_LISTED:
        lines.append(f"... and {len(joiners) - _MAX_LISTED} more")
    return "\n".join(lines)


def _action_line(config: RaidConfig, young: int, total: int) -> str:
    limit = f"younger than {config.min_account_age_days:g} days"
    if config.action is RaidAction.ALERT:
        return f"Action: alert only ({young} of {total} accounts are {limit})."
    verb = {
        RaidAction.TIMEOUT: f"timed out for {config.timeout_minutes} min",
        RaidAction.KICK: "kicked",
        RaidAction.BAN: "banned",
    }[config.action]
    return (
        f"Action: accounts {limit} are {verb} ({young} of {total} so far; "
        "later joiners of this raid too)."
    )


def _seconds(span: timedelta) -> str:
    return f"{span.total_seconds():.1f} s"
