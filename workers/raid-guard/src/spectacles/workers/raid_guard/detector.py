"""Raid detection as pure state: a sliding window of joins per guild, no I/O, no clocks.

The window is measured on the members' ``joined_at`` (Discord's time of the join), not on when
the event reached us: a backlog drained after a restart or failover arrives in a burst, and
must not look like a raid when the joins themselves were spread out.
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass
from datetime import datetime, timedelta


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
    """An ongoing raid in one guild: the burst that started it, and when a join was last seen."""

    guild_id: int
    joiners: list[Joiner]
    last_seen: float
    """When (the caller's clock) the last join was seen; the raid ends a cooldown after it."""

    @property
    def span(self) -> timedelta:
        """Time from the first to the last join of the triggering burst."""
        return self.joiners[-1].joined_at - self.joiners[0].joined_at


@dataclass(frozen=True, slots=True)
class RaidStarted:
    """The threshold was just crossed: alert, lock down, act on ``raid.joiners``."""

    raid: Raid


_JOINED_AT = operator.attrgetter("joined_at")


class RaidDetector:
    """Counts joins per guild in a sliding window; reports a raid once, until it is ended."""

    def __init__(self, *, threshold: int, window: timedelta) -> None:
        self.threshold, self.window = threshold, window
        self._joins: dict[int, list[Joiner]] = {}  # per guild, sorted by joined_at
        self._raids: dict[int, Raid] = {}

    def observe(self, joiner: Joiner, now: float) -> RaidStarted | Raid | None:
        """Record a join seen at ``now``: a raid starts, goes on (its ``Raid``), or None.

        A join already in the window (a redelivery, a gateway replay) is not counted twice.
        """
        joins = self._joins.setdefault(joiner.guild_id, [])
        if any(j.user_id == joiner.user_id for j in joins):
            return None
        bisect.insort(joins, joiner, key=_JOINED_AT)
        del joins[: bisect.bisect_left(joins, joins[-1].joined_at - self.window, key=_JOINED_AT)]
        if (raid := self._raids.get(joiner.guild_id)) is not None:
            raid.last_seen = now
            return raid
        if len(joins) < self.threshold:
            return None
        raid = self._raids[joiner.guild_id] = Raid(joiner.guild_id, list(joins), now)
        return RaidStarted(raid)

    def raid(self, guild_id: int) -> Raid | None:
        """The ongoing raid of ``guild_id``, if any."""
        return self._raids.get(guild_id)

    def end(self, guild_id: int) -> Raid | None:
        """End the guild's raid; its window starts afresh."""
        self._joins.pop(guild_id, None)
        return self._raids.pop(guild_id, None)
