"""Discord snowflake ids: parsing, their embedded fields, and a generator."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Final, SupportsIndex

__all__ = ["DISCORD_EPOCH_MS", "Snowflake", "SnowflakeGenerator"]

# First millisecond of 2015, Discord's epoch for the timestamp in the top 42 bits of an id.
DISCORD_EPOCH_MS: Final[int] = 1420070400000

_MAX: Final[int] = (1 << 64) - 1
_MAX_TIMESTAMP_OFFSET: Final[int] = (1 << 42) - 1
_WORKER_MASK: Final[int] = 0x3E0000
_PROCESS_MASK: Final[int] = 0x1F000
_INCREMENT_MASK: Final[int] = 0xFFF


class Snowflake(int):
    """A Discord id: an `int` that also parses from the decimal strings Discord sends.

    It encodes back to a JSON string (see `spectacles.models.encode`), because JavaScript
    clients cannot hold 64-bit integers.
    """

    __slots__ = ()

    def __new__(cls, value: str | bytes | SupportsIndex) -> Snowflake:
        if isinstance(value, (bool, float)):
            raise TypeError(f"a snowflake must be an int or a decimal string, got {value!r}")
        if isinstance(value, (str, bytes)) and not value.strip().isdigit():
            raise ValueError(f"a snowflake must be a decimal string of digits, got {value!r}")
        self = super().__new__(cls, value)
        if not 0 <= self <= _MAX:
            raise ValueError(f"a snowflake must be between 0 and 2**64 - 1, got {value!r}")
        return self

    @classmethod
    def from_parts(
        cls, timestamp_ms: int, worker_id: int = 0, process_id: int = 0, increment: int = 0
    ) -> Snowflake:
        """Build an id from its fields; each one is range-checked."""
        offset = timestamp_ms - DISCORD_EPOCH_MS
        if not 0 <= offset <= _MAX_TIMESTAMP_OFFSET:
            raise ValueError(f"timestamp_ms {timestamp_ms} is outside the snowflake range")
        for name, value in (("worker_id", worker_id), ("process_id", process_id)):
            if not 0 <= value <= 31:
                raise ValueError(f"{name} must be in 0..31, got {value}")
        if not 0 <= increment <= _INCREMENT_MASK:
            raise ValueError(f"increment must be in 0..4095, got {increment}")
        return cls((offset << 22) | (worker_id << 17) | (process_id << 12) | increment)

    @property
    def timestamp_ms(self) -> int:
        """Creation time in milliseconds since the Unix epoch."""
        return (self >> 22) + DISCORD_EPOCH_MS

    @property
    def created_at(self) -> datetime:
        """Creation time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)

    @property
    def worker_id(self) -> int:
        """Internal worker id that generated the id."""
        return (self & _WORKER_MASK) >> 17

    @property
    def process_id(self) -> int:
        """Internal process id that generated the id."""
        return (self & _PROCESS_MASK) >> 12

    @property
    def increment(self) -> int:
        """Per-process counter, incremented for each id generated in the same millisecond."""
        return self & _INCREMENT_MASK

    def __repr__(self) -> str:
        return f"Snowflake({int(self)})"

    # int's str() would fall back to our __repr__; keep the plain decimal form.
    __str__ = int.__repr__


class SnowflakeGenerator:
    """Generates unique, strictly increasing snowflakes for one (worker, process) pair.

    When more than 4096 ids are asked for within one millisecond, or the clock goes back, the
    generator borrows from the next millisecond rather than repeat an id. Thread-safe.
    """

    def __init__(self, worker_id: int = 0, process_id: int = 0) -> None:
        Snowflake.from_parts(DISCORD_EPOCH_MS, worker_id, process_id)  # validates both
        self.worker_id = worker_id
        self.process_id = process_id
        self._last_ms = -1
        self._increment = 0
        self._lock = threading.Lock()

    def next(self, timestamp_ms: int | None = None) -> Snowflake:
        """Return a new id stamped `timestamp_ms` (default: now), never older than the last one."""
        ms = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
        with self._lock:
            if ms > self._last_ms:
                self._last_ms, self._increment = ms, 0
            elif self._increment < _INCREMENT_MASK:
                self._increment += 1
            else:
                self._last_ms, self._increment = self._last_ms + 1, 0
            return Snowflake.from_parts(
                self._last_ms, self.worker_id, self.process_id, self._increment
            )
