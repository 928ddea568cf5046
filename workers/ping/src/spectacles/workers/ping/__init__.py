"""The ping worker: answers ``/ping`` and ``!ping`` with ``Pong!`` and the latency."""

from spectacles.workers.ping.handlers import (
    PING_OPTIONS,
    PingConfig,
    answer_ping,
    answer_ping_command,
    is_ping,
    latency_ms,
    pong_text,
)

__all__ = [
    "PING_OPTIONS",
    "PingConfig",
    "answer_ping",
    "answer_ping_command",
    "is_ping",
    "latency_ms",
    "pong_text",
]
