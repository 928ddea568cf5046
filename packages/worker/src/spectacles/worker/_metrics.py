"""Prometheus metrics every worker exports on ``/metrics``.

They are module-level (one registry per process) and labelled by worker and event, so several
``Worker`` objects in one process — tests, or a process hosting two features — share them safely.

The per-message ones (handled, failed, handler seconds, in flight) are plain numbers on
``EventStats`` / ``WorkerStats`` that the handler path bumps, read by a collector when
``/metrics`` is scraped: a ``prometheus_client`` child takes a lock per update, and a
histogram's ``observe`` walks its buckets in Python — together several µs per message, more than
the rest of a no-op handler's SDK path. What a scrape shows is the same: exact at the time of the
scrape, same names, types, labels and buckets.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Final

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = [
    "BUCKETS",
    "DEAD_LETTERED",
    "EventStats",
    "WorkerStats",
    "event_stats",
    "worker_stats",
]

_LABELS: Final = ("worker", "event")

#: Upper bounds of ``spectacles_worker_handler_seconds`` (seconds; +Inf is implied).
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKET_NAMES: Final = (*(floatToGoString(b) for b in BUCKETS), "+Inf")  # type: ignore[no-untyped-call]

DEAD_LETTERED: Final = Counter(
    "spectacles_worker_events_dead_lettered_total",
    "Messages sent to the .dead queue: 'malformed' body, 'handler' raised DeadLetter, "
    "'unhandled' event (both at once), 'failed' after max_attempts.",
    (*_LABELS, "reason"),
)


class EventStats:
    """One (worker, event)'s counts: bumped in place by the handler path, read on scrape.

    ``buckets[i]`` counts the handler runs that took at most ``BUCKETS[i]`` seconds and more than
    the bound before it (the last one: more than 10 s); ``bisect_left(BUCKETS, seconds)`` is the
    index of a run.
    """

    __slots__ = ("buckets", "created", "failed", "handled", "seconds")

    def __init__(self) -> None:
        self.handled = 0
        self.failed = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        """Record one handler run of ``seconds`` (the hot path inlines this)."""
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.seconds += seconds


class WorkerStats:
    """One worker's handlers running right now."""

    __slots__ = ("in_flight",)

    def __init__(self) -> None:
        self.in_flight = 0


_events: dict[tuple[str, str], EventStats] = {}
_workers: dict[str, WorkerStats] = {}
_lock = threading.Lock()  # creation only; scrapes may come from another thread


def event_stats(worker: str, event: str) -> EventStats:
    """The stats of ``(worker, event)``, created (and exported, at zero) on first use."""
    stats = _events.get((worker, event))
    if stats is None:
        with _lock:
            stats = _events.setdefault((worker, event), EventStats())
    return stats


def worker_stats(worker: str) -> WorkerStats:
    """The stats of ``worker``, created (and exported, at zero) on first use."""
    stats = _workers.get(worker)
    if stats is None:
        with _lock:
            stats = _workers.setdefault(worker, WorkerStats())
    return stats


class _StatsCollector(Collector):
    """Turns the plain numbers into the metric families on each scrape."""

    def collect(self) -> Iterator[Metric]:
        with _lock:
            events = list(_events.items())
            workers = list(_workers.items())
        handled = CounterMetricFamily(
            "spectacles_worker_events_handled",
            "Events whose handler returned normally (the message was acked).",
            labels=_LABELS,
        )
        failed = CounterMetricFamily(
            "spectacles_worker_events_failed",
            "Handler runs that raised; the message is retried until max_attempts, "
            "then dead-lettered.",
            labels=_LABELS,
        )
        seconds = HistogramMetricFamily(
            "spectacles_worker_handler_seconds",
            "Time spent in the handler, from decoded event to return (success or failure).",
            labels=_LABELS,
        )
        for labels, stats in events:
            handled.add_metric(labels, stats.handled, created=stats.created)
            failed.add_metric(labels, stats.failed, created=stats.created)
            cumulative, total = [], 0
            for name, count in zip(_BUCKET_NAMES, list(stats.buckets), strict=True):
                total += count
                cumulative.append((name, float(total)))
            seconds.add_metric(labels, cumulative, stats.seconds)
        in_flight = GaugeMetricFamily(
            "spectacles_worker_handlers_in_flight",
            "Handlers running right now (bounded by WORKER_CONCURRENCY).",
            labels=("worker",),
        )
        for worker, wstats in workers:
            in_flight.add_metric((worker,), wstats.in_flight)
        yield handled
        yield failed
        yield seconds
        yield in_flight


REGISTRY.register(_StatsCollector())
