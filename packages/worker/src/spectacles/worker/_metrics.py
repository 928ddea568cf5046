"""Prometheus metrics every worker exports on ``/metrics``.

They are module-level (one registry per process) and labelled by worker and event, so several
``Worker`` objects in one process — tests, or a process hosting two features — share them safely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["DEAD_LETTERED", "FAILED", "HANDLED", "HANDLER_SECONDS", "IN_FLIGHT", "EventMetrics"]

_LABELS: Final = ("worker", "event")

HANDLED: Final = Counter(
    "spectacles_worker_events_handled_total",
    "Events whose handler returned normally (the message was acked).",
    _LABELS,
)
FAILED: Final = Counter(
    "spectacles_worker_events_failed_total",
    "Handler runs that raised; the message is retried until max_attempts, then dead-lettered.",
    _LABELS,
)
DEAD_LETTERED: Final = Counter(
    "spectacles_worker_events_dead_lettered_total",
    "Messages sent to the .dead queue: 'malformed' body, 'handler' raised DeadLetter, "
    "'unhandled' event (both at once), 'failed' after max_attempts.",
    (*_LABELS, "reason"),
)
HANDLER_SECONDS: Final = Histogram(
    "spectacles_worker_handler_seconds",
    "Time spent in the handler, from decoded event to return (success or failure).",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT: Final = Gauge(
    "spectacles_worker_handlers_in_flight",
    "Handlers running right now (bounded by WORKER_CONCURRENCY).",
    ("worker",),
)


@dataclass(frozen=True, slots=True)
class EventMetrics:
    """The labelled children for one (worker, event): ``labels()`` costs more than a no-op handler.

    Built once per event and reused for every delivery.
    """

    handled: Counter
    failed: Counter
    seconds: Histogram

    @classmethod
    def of(cls, worker: str, event: str) -> EventMetrics:
        """Look the children up (created on first use, as prometheus_client does)."""
        return cls(
            handled=HANDLED.labels(worker, event),
            failed=FAILED.labels(worker, event),
            seconds=HANDLER_SECONDS.labels(worker, event),
        )
