"""Prometheus metrics of the REST client (route templates as labels keep cardinality low)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["RATE_LIMITED", "REQUESTS", "REQUEST_SECONDS", "RETRIES"]

REQUESTS = Counter(
    "spectacles_rest_requests_total",
    "Discord REST answers received, by route template and status.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "spectacles_rest_request_seconds",
    "Time from the first attempt to the final answer, rate-limit waits included.",
    ["method", "route"],
)
RATE_LIMITED = Counter(
    "spectacles_rest_rate_limited_total",
    "429 answers received (each one is a limit we failed to predict).",
    ["scope"],
)
RETRIES = Counter(
    "spectacles_rest_retries_total",
    "Attempts repeated after a 429, a 5xx or a connection error.",
    ["reason"],
)
