"""The text of a raid alert: what moderators need to decide in one glance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from spectacles.workers.raid_guard.config import RaidAction, RaidConfig
from spectacles.workers.raid_guard.detector import Joiner, Raid

VERIFICATION_NAMES: Final = {0: "NONE", 1: "LOW", 2: "MEDIUM", 3: "HIGH", 4: "VERY_HIGH"}
_MAX_LISTED: Final = 15  # keeps the alert under Discord's 2,000 characters however big the raid
_VERBS: Final = {
    RaidAction.TIMEOUT: "timed out",
    RaidAction.KICK: "kicked",
    RaidAction.BAN: "banned",
}


def format_age(age: timedelta) -> str:
    """``40 min``, ``3 h``, ``412 d``: precise for young accounts, short for old ones."""
    minutes = age.total_seconds() / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.0f} h" if minutes < 48 * 60 else f"{minutes / 1440:.0f} d"


def raid_alert(
    raid: Raid, config: RaidConfig, *, verification: str, young: Sequence[Joiner]
) -> str:
    """The alert: join count and window, what was done, and the joiners' account ages."""
    joiners = sorted(raid.joiners, key=lambda j: j.account_age)  # newest account first
    ages, count = [format_age(j.account_age) for j in joiners], f"{len(young)} of {len(joiners)}"
    median = ages[(len(ages) - 1) // 2]
    limit = f"younger than {config.min_account_age_days:g} days"
    action = f"Action: alert only ({count} accounts are {limit})."
    if config.action is not RaidAction.ALERT:
        timeout = (
            f" for {config.timeout_minutes} min" if config.action is RaidAction.TIMEOUT else ""
        )
        action = f"Action: accounts {limit} are {_VERBS[config.action]}{timeout} ({count} so far;"
        action += " later joiners of this raid too)."
    lines = [
        f"\N{POLICE CARS REVOLVING LIGHT} **Raid detected**: {len(joiners)} members joined within"
        f" {raid.span.total_seconds():.1f} s (threshold: {config.join_threshold} in"
        f" {config.window_seconds:g} s).",
        verification,
        action,
        f"Account ages: youngest {ages[0]}, median {median}, oldest {ages[-1]}.",
        "Joiners (newest account first):",
        *(
            f"- <@{j.user_id}> {j.name}: account {a} old"
            for j, a in zip(joiners, ages[:_MAX_LISTED], strict=False)
        ),
    ]
    if len(joiners) > _MAX_LISTED:
        lines.append(f"... and {len(joiners) - _MAX_LISTED} more")
    return "\n".join(lines)
