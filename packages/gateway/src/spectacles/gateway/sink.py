"""The seam between a shard and where its dispatches go: `EventSink`.

A shard speaks the Discord protocol only (HELLO, IDENTIFY/RESUME, heartbeats, op 7/9, close
codes) and hands every dispatch to its sink, as hikari hands them to its `event_consumer`. The
sink owns the resume point, the one number a RESUME needs besides the session id (twilight's
`Session.sequence`): it advances it only past dispatches it has made safe, so a RESUME makes
Discord replay whatever the sink had not taken for good yet. `relay.Relay` is the RabbitMQ sink;
`MemorySink` keeps dispatches in a list, for tests and for embedding a shard in a program.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

__all__ = ["EventSink", "MemorySink", "SinkError", "SinkRefused", "SinkUnavailable"]


class SinkError(Exception):
    """The sink cannot take the connection's events any more; the shard RESUMEs later."""


class SinkUnavailable(SinkError):
    """The sink is away (RabbitMQ unreachable): the shard waits for it, then RESUMEs."""


class SinkRefused(SinkError):
    """The sink is there but refused an event: the shard backs off, then RESUMEs."""


class EventSink(Protocol):
    """What a shard hands its dispatches to (see the module docstring)."""

    @property
    def resume_seq(self) -> int:
        """The seq to RESUME after: every dispatch up to it is safe with the sink."""

    @property
    def pending(self) -> int:
        """Dispatches of the current connection handed over but not yet safe."""

    def reset(self, seq: int) -> None:
        """Set the resume point: 0 for a new session, a saved session's seq before a RESUME."""

    def begin(self, fail: Callable[[BaseException], None]) -> None:
        """A connection starts; `fail(error)` ends it (with a `SinkError`) from a callback."""

    def session(self, session_id: str) -> None:
        """The session whose dispatches follow (READY's, or the one being resumed)."""

    def dispatch(self, seq: int, name: str, raw: msgspec.Raw) -> Awaitable[None] | None:
        """Take one dispatch, in seq order; an awaitable means: wait for it before reading on.

        May advance the resume point at once or later (once the event is safe); raises a
        `SinkError` when it cannot take the event.
        """

    async def end(self, timeout: float) -> None:
        """The connection ended: wait (at most `timeout`) for what is in flight to settle."""

    async def wait_available(self, timeout: float) -> None:
        """Return once events can be taken again; `SinkUnavailable` after `timeout`."""


class MemorySink:
    """An `EventSink` that keeps dispatches in `events`; the resume point moves on `advance`.

    With `auto_advance` every dispatch is safe at once (the resume point follows the last one).
    """

    def __init__(self, *, auto_advance: bool = False) -> None:
        self.events: list[tuple[int, str, bytes]] = []
        self.sessions: list[str] = []
        self.connections = 0
        self.auto_advance = auto_advance
        self._resume_seq = 0
        self._fail: Callable[[BaseException], None] | None = None

    @property
    def resume_seq(self) -> int:
        """The last seq `advance` (or `auto_advance`) made safe."""
        return self._resume_seq

    @property
    def pending(self) -> int:
        """Dispatches received after the resume point."""
        return sum(1 for seq, _, _ in self.events if seq > self._resume_seq)

    def reset(self, seq: int) -> None:
        """Move the resume point to `seq`."""
        self._resume_seq = seq

    def begin(self, fail: Callable[[BaseException], None]) -> None:
        """Count the connection; keep `fail` for `fail_connection`."""
        self.connections += 1
        self._fail = fail

    def session(self, session_id: str) -> None:
        """Remember the session ids seen, in order."""
        self.sessions.append(session_id)

    def dispatch(self, seq: int, name: str, raw: msgspec.Raw) -> None:
        """Keep the dispatch."""
        self.events.append((seq, name, bytes(raw)))
        if self.auto_advance:
            self._resume_seq = seq

    def advance(self, seq: int) -> None:
        """Every dispatch up to `seq` is safe: the resume point moves there."""
        self._resume_seq = max(self._resume_seq, seq)

    def fail_connection(self, error: SinkError) -> None:
        """End the current connection as a failing sink would."""
        if self._fail is not None:
            self._fail(error)

    async def end(self, timeout: float) -> None:
        """Nothing in flight."""

    async def wait_available(self, timeout: float) -> None:
        """Always available."""
