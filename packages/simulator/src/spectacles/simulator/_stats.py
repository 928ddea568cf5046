"""Counters the control API reports, so tests and benchmarks can see what the simulator did."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RestCall", "Stats"]


@dataclass(frozen=True, slots=True)
class RestCall:
    """One REST request the bot made."""

    at: float
    method: str
    path: str
    status: int
    bucket: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The rest-log entry."""
        return {
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "bucket": self.bucket,
            "reason": self.reason,
        }


@dataclass(slots=True)
class Stats:
    """Everything counted since start (or the last reset)."""

    dispatches: Counter[int] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    connection_paths: Counter[str] = field(default_factory=Counter)
    connections_total: int = 0
    connections_open: int = 0
    identifies: int = 0
    # Every IDENTIFY received (accepted or not), and those refused by the bucket or the quota.
    identify_attempts: int = 0
    identify_rejected: int = 0
    resumes: int = 0
    invalid_sessions: int = 0
    heartbeats: int = 0
    rest_requests: int = 0
    rate_limited: int = 0
    global_rate_limited: int = 0
    flood_sent: int = 0
    # A shard's session opened or resumed while another connection still ran that shard: the
    # same shard run twice (real Discord sends both every event). A gateway cluster keeps it 0.
    shard_overlaps: int = 0
    rest_log: deque[RestCall] = field(default_factory=lambda: deque(maxlen=10_000))

    def reset(self) -> None:
        """Zero every counter (open connections stay as they are: they are a level, not a count)."""
        open_now = self.connections_open
        fresh = Stats()
        for name in self.__slots__:
            setattr(self, name, getattr(fresh, name))
        self.connections_open = open_now

    def to_json(self) -> dict[str, Any]:
        """The `/_sim/stats` body."""
        return {
            "dispatches": {str(shard): n for shard, n in sorted(self.dispatches.items())},
            "dispatches_total": sum(self.dispatches.values()),
            "events": dict(self.events),
            "closes": {str(code): n for code, n in sorted(self.closes.items())},
            "connections": {
                "open": self.connections_open,
                "total": self.connections_total,
                "by_path": dict(self.connection_paths),
            },
            "identifies": self.identifies,
            "identify_attempts": self.identify_attempts,
            "identify_rejected": self.identify_rejected,
            "resumes": self.resumes,
            "invalid_sessions": self.invalid_sessions,
            "heartbeats": self.heartbeats,
            "rest_requests": self.rest_requests,
            "rate_limited": self.rate_limited,
            "global_rate_limited": self.global_rate_limited,
            "flood_sent": self.flood_sent,
            "shard_overlaps": self.shard_overlaps,
        }
