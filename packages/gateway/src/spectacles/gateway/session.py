"""A shard's resume point, and the tracker that moves it only past confirmed events.

Discord replays every dispatch after the `seq` sent in RESUME. Sending the last *confirmed* seq
(not the last received one) makes the server replay whatever RabbitMQ has not confirmed yet, so
a broker outage or a crash loses nothing; replays reuse the same message_id.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable

import msgspec

__all__ = ["ConfirmTracker", "SessionState"]


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to RESUME a shard's session; small enough to persist often."""

    shard_id: int
    shard_count: int
    session_id: str
    seq: int
    resume_gateway_url: str
    saved_at: float = 0.0


class ConfirmTracker:
    """Contiguous confirmed sequence numbers of one connection.

    Events arrive in seq order. A relayed event is pending until its publish future resolves;
    an event that is not relayed counts as confirmed as soon as everything before it is.
    `confirmed` is the highest seq with every event up to it confirmed.
    """

    __slots__ = ("_on_failure", "_pending", "confirmed", "failure", "published")

    def __init__(
        self,
        confirmed: int,
        on_failure: Callable[[BaseException], None] | None = None,
        published: Counter[str] | None = None,
    ) -> None:
        self.confirmed = confirmed
        self.failure: BaseException | None = None
        # Confirmed relayed events by name, read by the metrics flusher.
        self.published: Counter[str] = published if published is not None else Counter()
        self._pending: deque[tuple[int, asyncio.Future[None] | None, str]] = deque()
        self._on_failure = on_failure

    @property
    def pending(self) -> int:
        """Events received but not yet confirmed (relayed or waiting behind one)."""
        return len(self._pending)

    def skip(self, seq: int) -> None:
        """An event that is not relayed: confirmed once everything before it is."""
        if self._pending:
            self._pending.append((seq, None, ""))
        elif seq > self.confirmed:
            self.confirmed = seq

    def track(self, seq: int, future: asyncio.Future[None], name: str) -> None:
        """A relayed event `name`: confirmed when `future` resolves without error."""
        self._pending.append((seq, future, name))
        future.add_done_callback(self._on_done)

    def _on_done(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            error: BaseException | None = asyncio.CancelledError()
        else:
            error = future.exception()
        if error is not None:
            if self.failure is None:
                self.failure = error
                if self._on_failure is not None:
                    self._on_failure(error)
            return
        self._advance()

    def _advance(self) -> None:
        pending = self._pending
        while pending:
            seq, future, name = pending[0]
            if future is not None:
                if not future.done() or future.cancelled() or future.exception() is not None:
                    return
                self.published[name] += 1
            pending.popleft()
            if seq > self.confirmed:
                self.confirmed = seq

    async def drain(self, timeout: float) -> int:
        """Wait (bounded) for the pending publishes to settle; return the confirmed seq."""
        futures = [f for _, f, _ in self._pending if f is not None and not f.done()]
        if futures:
            await asyncio.wait(futures, timeout=timeout)
        self._advance()
        return self.confirmed
