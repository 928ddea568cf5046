"""A shard's resume point, and the tracker that moves it only past confirmed events.

Discord replays every dispatch after the `seq` sent in RESUME. Sending the last *confirmed* seq
(not the last received one) makes the server replay whatever RabbitMQ has not confirmed yet, so
a broker outage or a crash loses nothing; replays reuse the same message_id. `Relay` keeps one
`ResumeTracker` per connection; its `confirmed` is the resume point the shard RESUMEs from.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable

import msgspec

__all__ = ["ResumeTracker", "SessionState"]


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to RESUME a shard's session; small enough to persist often."""

    shard_id: int
    shard_count: int
    session_id: str
    seq: int
    resume_gateway_url: str
    saved_at: float = 0.0


class ResumeTracker:
    """Contiguous confirmed sequence numbers of one connection.

    Events arrive in seq order. A relayed event is pending until the publisher reports its
    confirm (this is the :class:`spectacles.broker.ConfirmListener` of the relay's publishes,
    with the seq as token); an event that is not relayed counts as confirmed as soon as
    everything before it is. `confirmed` is the highest seq with every event up to it confirmed.
    RabbitMQ may confirm out of order: such seqs wait in `_early` until the gap closes.
    """

    __slots__ = (
        "_abandoned",
        "_drained",
        "_early",
        "_latencies",
        "_on_failure",
        "_pending",
        "_samples",
        "confirmed",
        "failure",
        "published",
    )

    def __init__(
        self,
        confirmed: int,
        on_failure: Callable[[BaseException], None] | None = None,
        published: Counter[str] | None = None,
        latencies: list[float] | None = None,
    ) -> None:
        self.confirmed = confirmed
        self.failure: BaseException | None = None
        # Confirmed relayed events by name, read by the metrics flusher.
        self.published: Counter[str] = published if published is not None else Counter()
        # (seq, event name) in arrival order; the name is None for an event not relayed.
        self._pending: deque[tuple[int, str | None]] = deque()
        self._early: set[int] = set()
        self._on_failure = on_failure
        # Confirm latency of sampled events: seq -> perf_counter() at submit.
        self._latencies = latencies if latencies is not None else []
        self._samples: dict[int, float] = {}
        self._drained: asyncio.Event | None = None
        # The first tracked seq that was never written (its submit failed or was cancelled).
        self._abandoned: int | None = None

    @property
    def pending(self) -> int:
        """Events received but not yet confirmed (relayed or waiting behind one)."""
        return len(self._pending)

    def skip(self, seq: int) -> None:
        """An event that is not relayed: confirmed once everything before it is."""
        if self._pending:
            self._pending.append((seq, None))
        elif seq > self.confirmed:
            self.confirmed = seq

    def track(self, seq: int, name: str) -> None:
        """A relayed event `name`, submitted with `seq` as its confirm token."""
        self._pending.append((seq, name))

    def sample_latency(self, seq: int) -> None:
        """Measure how long the confirm of `seq` (tracked next or just now) takes."""
        self._samples[seq] = time.perf_counter()

    def publish_confirmed(self, token: int) -> None:
        """RabbitMQ confirmed the event with seq `token` (called by the publisher)."""
        if self._samples:
            started = self._samples.pop(token, None)
            if started is not None:
                self._latencies.append(time.perf_counter() - started)
        pending = self._pending
        if pending and pending[0][0] == token:  # the usual case: confirms come in order
            seq, name = pending.popleft()
            self.published[name] += 1  # type: ignore[index]  # a tracked entry has its name
            if seq > self.confirmed:
                self.confirmed = seq
            if pending and (pending[0][1] is None or self._early):
                self._advance()
            elif self._drained is not None:
                self._check_drained()
        else:
            self._early.add(token)

    def abandon(self, seq: int) -> None:
        """`seq` was tracked but never written: the resume point stays before it for good.

        Nothing will ever settle it, so `drain` waits only for the events before it.
        """
        self._samples.pop(seq, None)
        if self._abandoned is None or seq < self._abandoned:
            self._abandoned = seq
        self._check_drained()

    def publish_failed(self, token: int, error: BaseException) -> None:
        """The event with seq `token` was not confirmed: the connection must be replaced."""
        self._samples.pop(token, None)
        if self.failure is None:
            self.failure = error
            if self._drained is not None:
                self._drained.set()  # nothing after it can be confirmed any more
            if self._on_failure is not None:
                self._on_failure(error)

    def _advance(self) -> None:
        pending = self._pending
        early = self._early
        published = self.published
        while pending:
            seq, name = pending[0]
            if name is not None:
                if seq not in early:
                    break
                early.discard(seq)
                published[name] += 1
            pending.popleft()
            if seq > self.confirmed:
                self.confirmed = seq
        self._check_drained()

    def _check_drained(self) -> None:
        """Wake `drain` once nothing it could still wait for is pending."""
        pending = self._pending
        if self._drained is not None and (
            not pending or self.failure is not None or pending[0][0] == self._abandoned
        ):
            self._drained.set()

    async def drain(self, timeout: float) -> int:
        """Wait (bounded) for the pending publishes to settle; return the confirmed seq."""
        self._advance()
        self._drained = asyncio.Event()
        self._check_drained()
        if not self._drained.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._drained.wait()
        return self.confirmed
