"""The one retry policy of the project: exponential, jittered, capped.

Every reconnect or retry loop waits through a :class:`Backoff`, so a broker that is down costs a
few attempts a minute per client, not a hot loop, and replicas that lost the same node do not come
back in lockstep. Attempt ``n`` (from 0) has a ceiling of ``min(cap, base * factor**n)``; the
jitter decides where under that ceiling the wait falls:

- ``equal`` (default): uniform in [ceiling/2, ceiling]. The floor keeps a failure that lasts from
  turning into a loop; the spread still breaks lockstep.
- ``full``: uniform in [0, ceiling] (the least contention; a retry can come at once).
- ``decorrelated``: uniform in [base, 3 * previous wait], capped (AWS's "decorrelated jitter").
- ``none``: the ceiling itself (for tests that count attempts).
"""

from __future__ import annotations

import asyncio
import random
from typing import Final, Literal

__all__ = ["JITTERS", "Backoff", "Jitter"]

Jitter = Literal["equal", "full", "decorrelated", "none"]
JITTERS: Final[tuple[Jitter, ...]] = ("equal", "full", "decorrelated", "none")


class Backoff:
    """Waits between attempts; :meth:`reset` after a success starts over from ``base``."""

    __slots__ = ("_previous", "_random", "attempts", "base", "cap", "factor", "jitter")

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 15.0,
        *,
        factor: float = 2.0,
        jitter: Jitter = "equal",
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        if factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {factor}")
        if jitter not in JITTERS:
            raise ValueError(f"backoff jitter must be one of {', '.join(JITTERS)}, got {jitter!r}")
        self.base = base
        self.cap = cap
        self.factor = factor
        self.jitter: Jitter = jitter
        self.attempts = 0  # delays handed out since the last reset
        self._previous = base
        self._random = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        """The longest wait before attempt ``attempt`` (0-based), before jitter."""
        ceiling = self.base
        # Grow step by step and stop at the cap: factor**attempt would overflow after an outage.
        for _ in range(attempt):
            if ceiling >= self.cap:
                break
            ceiling *= self.factor
        return min(self.cap, ceiling)

    def next_delay(self) -> float:
        """The wait before the next attempt (counts it)."""
        delay = self.delay(self.attempts)
        self.attempts += 1
        return delay

    def delay(self, attempt: int) -> float:
        """The jittered wait before attempt ``attempt`` (0-based); does not count it.

        For loops that count their own failures (and reset the count their own way).
        """
        ceiling = self.ceiling(attempt)
        if self.jitter == "equal":
            delay = self._random.uniform(ceiling / 2, ceiling)
        elif self.jitter == "full":
            delay = self._random.uniform(0, ceiling)
        elif self.jitter == "decorrelated":
            delay = min(self.cap, self._random.uniform(self.base, self._previous * 3))
        else:
            delay = ceiling
        self._previous = delay
        return delay

    async def sleep(self) -> float:
        """Wait :meth:`next_delay` seconds; returns how long it waited."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        """Start over from ``base`` (after a success, or a connection that stayed up)."""
        self.attempts = 0
        self._previous = self.base

    def __repr__(self) -> str:
        return (
            f"Backoff(base={self.base}, cap={self.cap}, factor={self.factor}, "
            f"jitter={self.jitter!r}, attempts={self.attempts})"
        )
