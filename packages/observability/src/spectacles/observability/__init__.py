"""Logging, metrics and health endpoints shared by every Spectacles service."""

from spectacles.observability._health import HealthServer, ReadyCheck, parse_address
from spectacles.observability._logging import (
    LOG_FORMATS,
    LOG_LEVELS,
    REDACTED,
    configure_logging,
    get_logger,
    redact,
    register_secret,
)

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "REDACTED",
    "HealthServer",
    "ReadyCheck",
    "configure_logging",
    "get_logger",
    "parse_address",
    "redact",
    "register_secret",
]
