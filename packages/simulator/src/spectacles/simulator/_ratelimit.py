"""REST rate limits as Discord applies them: per (bucket, major parameter), plus a global limit."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from spectacles.simulator._config import SimulatorConfig

__all__ = ["RateLimiter", "Verdict"]


@dataclass(slots=True)
class _Window:
    reset_at: float
    remaining: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may proceed, and the headers its response carries either way."""

    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float = 0.0
    scope: str | None = None
    bucket: str | None = None

    @property
    def is_global(self) -> bool:
        """A global 429 (every route is blocked, not one bucket)."""
        return self.scope == "global"

    def body(self) -> dict[str, object]:
        """Discord's 429 JSON body."""
        return {
            "message": "You are being rate limited.",
            "retry_after": round(self.retry_after, 3),
            "global": self.is_global,
            # Optional in the docs ("for some limits"), required by the OpenAPI spec.
            "code": 0,
        }


def bucket_hash(route: str) -> str:
    """An opaque, stable bucket id for a route template (Discord's excludes the major parameter)."""
    return hashlib.sha1(route.encode()).hexdigest()[:32]


class RateLimiter:
    """Fixed windows per (route template, major parameter value), plus a global one per second."""

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global = _Window(0.0, config.global_rate_limit)

    def check(self, route: str, major: str, *, count_global: bool = True) -> Verdict:
        """Count one request for `route` with major parameter `major` and judge it.

        `count_global=False` for routes outside the global limit (interaction responses).
        """
        config = self._config
        if not config.rate_limits_enabled:
            return Verdict(True)
        now = self._clock()
        glob = self._global
        if now >= glob.reset_at:
            glob.reset_at, glob.remaining = now + 1.0, config.global_rate_limit
        if count_global and glob.remaining <= 0:
            retry = glob.reset_at - now
            headers = {
                "Retry-After": str(max(math.ceil(retry), 1)),
                "X-RateLimit-Global": "true",
                "X-RateLimit-Scope": "global",
            }
            return Verdict(False, headers, retry, "global")
        if count_global:
            glob.remaining -= 1
        limit = config.route_limit(route)
        key = (route, major)
        window = self._windows.get(key)
        if window is None or now >= window.reset_at:
            window = self._windows[key] = _Window(now + limit.per, limit.limit)
        bucket = bucket_hash(route)
        reset_after = max(window.reset_at - now, 0.0)
        if window.remaining <= 0:
            headers = self._headers(limit.limit, 0, window.reset_at, reset_after, bucket)
            headers["Retry-After"] = str(max(math.ceil(reset_after), 1))
            headers["X-RateLimit-Scope"] = "user"
            return Verdict(False, headers, reset_after, "user", bucket)
        window.remaining -= 1
        headers = self._headers(limit.limit, window.remaining, window.reset_at, reset_after, bucket)
        return Verdict(True, headers, 0.0, None, bucket)

    @staticmethod
    def _headers(
        limit: int, remaining: int, reset_at: float, reset_after: float, bucket: str
    ) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }
