"""Discord's outgoing gateway limit: 120 payloads per 60 s per connection, heartbeats first.

Going over it closes the connection with 4008, so commands from workers may only use what the
heartbeats leave: `reserved` slots of every window are kept for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from typing import Final

__all__ = ["DEFAULT_LIMIT", "DEFAULT_WINDOW", "SendLimiter", "heartbeat_reserve"]

DEFAULT_LIMIT: Final = 120
DEFAULT_WINDOW: Final = 60.0
# Slots kept on top of the heartbeats themselves: IDENTIFY/RESUME and a server-requested beat.
EXTRA_RESERVE: Final = 3


def heartbeat_reserve(heartbeat_interval: float, window: float = DEFAULT_WINDOW) -> int:
    """Slots per window the heartbeats of a connection may need."""
    if heartbeat_interval <= 0:
        return DEFAULT_LIMIT // 2
    return math.ceil(window / heartbeat_interval) + 1 + EXTRA_RESERVE


class SendLimiter:
    """A sliding-window limiter; priority sends (heartbeats) may use the reserved slots."""

    def __init__(
        self, limit: int = DEFAULT_LIMIT, window: float = DEFAULT_WINDOW, reserved: int = 8
    ) -> None:
        self._limit = limit
        self._window = window
        self._reserved = min(reserved, limit - 1)
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    def set_reserved(self, reserved: int) -> None:
        """Keep `reserved` slots per window for priority sends (known once HELLO arrived)."""
        self._reserved = max(0, min(reserved, self._limit - 1))

    def reset(self) -> None:
        """Forget the history: Discord counts per connection."""
        self._sent.clear()

    def _prune(self, now: float) -> None:
        horizon = now - self._window
        sent = self._sent
        while sent and sent[0] <= horizon:
            sent.popleft()

    def try_acquire_priority(self) -> bool:
        """Take a slot for a heartbeat at once, if one is left in the whole window."""
        now = time.monotonic()
        self._prune(now)
        if len(self._sent) >= self._limit:
            return False
        self._sent.append(now)
        return True

    async def acquire(self) -> float:
        """Wait until a non-reserved slot is free, then take it (FIFO among waiters).

        Returns the slot's stamp, for `refund` when nothing ends up being sent.
        """
        async with self._lock:
            while True:
                now = time.monotonic()
                self._prune(now)
                if len(self._sent) < self._limit - self._reserved:
                    self._sent.append(now)
                    return now
                await asyncio.sleep(max(0.01, self._sent[0] + self._window - now))

    def refund(self, stamp: float) -> None:
        """Give back the slot `acquire` returned as `stamp` (a no-op after `reset`)."""
        with contextlib.suppress(ValueError):
            self._sent.remove(stamp)
