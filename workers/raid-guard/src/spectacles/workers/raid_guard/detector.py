"""Raid detection as pure state: a sliding window of joins per guild, no I/O, no clocks.

The window is measured on the members' ``joined_at`` (Discord's time of the join), not on when
the event reached us: a backlog drained after a restart or failover arrives in a burst, and
must not look like a raid when the joins themselves were spread out.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["Joiner", "Raid", "RaidContinues", "RaidDetector", "RaidStarted", "Verdict"]


@dataclass(frozen=True, slots=True)
class Joiner:
    """One member join, with what the alert and the action need."""

    guild_id: int
    user_id: int
    joined_at: datetime
    account_created_at: datetime
    name: str = ""

    @property
    def account_age(self) -> timedelta:
        """How old the account was when it joined."""
        return max(timedelta(0), self.joined_at - self.account_created_at)


@dataclass(slots=True)
class Raid:
    """An ongoing raid in one guild: who joined, and when the last join was seen."""

    guild_id: int
    joiners: list[Joiner]
    last_seen: float
    """Monotonic time of the last join we saw; the raid ends ``cooldown`` after it."""
    total_joins: int = 0
    """Joins seen since the raid started, the triggering burst included."""

    @property
    def span(self) -> timedelta:
        """Time from the first to the last join of the triggering burst."""
        return self.joiners[-1].joined_at - self.joiners[0].joined_at


@dataclass(frozen=True, slots=True)
class RaidStarted:
    """The threshold was just crossed: alert, lock down, act on ``raid.joiners``."""

    raid: Raid


@dataclass(frozen=True, slots=True)
class RaidContinues:
    """Another join during an ongoing raid: act on ``joiner`` only, no new alert."""

    raid: Raid
    joiner: Joiner


Verdict = RaidStarted | RaidContinues | None


@dataclass(slots=True)
class _GuildWindow:
    joins: list[Joiner] = field(default_factory=list)  # sorted by joined_at
    raid: Raid | None = None


class RaidDetector:
    """Counts joins per guild in a sliding window; reports a raid once until it is ended."""

    def __init__(self, *, threshold: int, window: timedelta) -> None:
        self.threshold = threshold
        self.window = window
        self._guilds: dict[int, _GuildWindow] = {}

    def observe(self, joiner: Joiner, now: float) -> Verdict:
        """Record a join (``now`` = monotonic seconds) and say whether it starts or feeds a raid.

        A join already in the window (a redelivery or a gateway replay) is not counted twice.
        """
        state = self._guilds.setdefault(joiner.guild_id, _GuildWindow())
        if any(j.user_id == joiner.user_id for j in state.joins):
            return None
        bisect.insort(state.joins, joiner, key=lambda j: j.joined_at)
        newest = state.joins[-1].joined_at
        cut = bisect.bisect_left(state.joins, newest - self.window, key=lambda j: j.joined_at)
        del state.joins[:cut]
        if state.raid is not None:
            state.raid.last_seen = now
            state.raid.total_joins += 1
            return RaidContinues(state.raid, joiner)
        if len(state.joins) >= self.threshold:
            burst = list(state.joins)
            state.raid = Raid(joiner.guild_id, burst, last_seen=now, total_joins=len(burst))
            return RaidStarted(state.raid)
        return None

    def raid(self, guild_id: int) -> Raid | None:
        """The ongoing raid of ``guild_id``, if any."""
        state = self._guilds.get(guild_id)
        return state.raid if state is not None else None

    def raiding_guilds(self) -> list[int]:
        """Guilds with an ongoing raid."""
        return [guild_id for guild_id, state in self._guilds.items() if state.raid is not None]

    def end(self, guild_id: int) -> Raid | None:
        """End the guild's raid (after its cooldown); the window starts afresh."""
        state = self._guilds.pop(guild_id, None)
        return state.raid if state is not None else None
