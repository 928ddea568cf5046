"""The ping worker: answers ``!ping`` with ``Pong!`` and the latency."""

from spectacles.workers.ping.handlers import (
    PingConfig,
    answer_ping,
    is_ping,
    latency_ms,
    pong_text,
)

__all__ = ["PingConfig", "answer_ping", "is_ping", "latency_ms", "pong_text"]
