"""Guard against Discord's invalid-request IP ban.

Discord bans an IP temporarily after 10,000 answers with status 401, 403 or 429 (except 429s
with scope ``shared``) within 10 minutes. A bot stuck on a bad token or a missing permission can
reach that in minutes, taking every other bot on the host down with it, so we count those
answers and refuse to send before the threshold, warning on the way up.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from spectacles.observability import get_logger

from ._errors import InvalidRequestLimitReached

__all__ = ["DISCORD_INVALID_REQUEST_LIMIT", "InvalidRequestGuard", "is_invalid_request"]

_log = get_logger("spectacles.rest.guard")

DISCORD_INVALID_REQUEST_LIMIT: Final = 10_000
DISCORD_INVALID_REQUEST_WINDOW: Final = 600.0


def is_invalid_request(status: int, scope: str | None) -> bool:
    """Whether Discord counts this answer towards the invalid-request limit."""
    return status in (401, 403) or (status == 429 and scope != "shared")


class InvalidRequestGuard:
    """Sliding-window counter of invalid requests that refuses at ``threshold``.

    The default threshold stays 10% under Discord's limit because other processes on the
    same IP count too; warnings are logged when the count first crosses each ``warn_ratios``
    fraction of the threshold.
    """

    def __init__(
        self,
        threshold: int = 9_000,
        *,
        window: float = DISCORD_INVALID_REQUEST_WINDOW,
        warn_ratios: Sequence[float] = (0.5, 0.8),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"invalid-request threshold must be >= 1, got {threshold}")
        self.threshold = threshold
        self.window = window
        self._warn_at = sorted({max(1, int(threshold * r)) for r in warn_ratios})
        self._warned: set[int] = set()
        self._clock = clock
        self._times: deque[float] = deque()

    @property
    def count(self) -> int:
        """Invalid requests inside the window now."""
        self._prune(self._clock())
        return len(self._times)

    def check(self) -> None:
        """Raise :class:`InvalidRequestLimitReached` when no more requests may be sent."""
        now = self._clock()
        self._prune(now)
        if len(self._times) >= self.threshold:
            # Refuse until enough old answers leave the window to go under the threshold.
            oldest_needed = self._times[len(self._times) - self.threshold]
            raise InvalidRequestLimitReached(
                len(self._times), self.threshold, self.window, oldest_needed + self.window - now
            )

    def record(self, status: int, scope: str | None = None) -> bool:
        """Count an answer if Discord does; returns whether it was counted."""
        if not is_invalid_request(status, scope):
            return False
        now = self._clock()
        self._prune(now)
        self._times.append(now)
        count = len(self._times)
        for mark in self._warn_at:
            if count >= mark and mark not in self._warned:
                self._warned.add(mark)
                _log.warning(
                    "rest.invalid_requests.high",
                    count=count,
                    threshold=self.threshold,
                    window_s=self.window,
                    last_status=status,
                    hint="fix the token/permissions/rate-limit cause; requests stop at threshold",
                )
        return True

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
        # Re-arm warnings once the count has fallen back under a mark.
        self._warned = {m for m in self._warned if len(self._times) >= m}
