"""``Context``: read-only, and its logger is bound only when a handler uses it."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from spectacles.worker import Context


def make(**overrides: Any) -> Context:
    fields: dict[str, Any] = {
        "rest": object(),
        "commands": object(),
        "worker": "w",
        "event": "MESSAGE_CREATE",
        "headers": {"shard_id": 2},
        "shard_id": 2,
        "message_id": "2:s:9",
        "attempt": 1,
    }
    fields.update(overrides)
    return Context(**fields)


def test_log_is_bound_once_on_first_use() -> None:
    calls: list[int] = []

    def bind() -> structlog.stdlib.BoundLogger:
        calls.append(1)
        logger: structlog.stdlib.BoundLogger = structlog.get_logger().bind(
            dispatch="MESSAGE_CREATE"
        )
        return logger

    ctx = make(log_factory=bind)
    assert calls == []  # building the context binds nothing
    with capture_logs() as logs:
        ctx.log.info("hello")
        ctx.log.info("again")
    assert calls == [1]
    assert [(e["event"], e["dispatch"]) for e in logs] == [
        ("hello", "MESSAGE_CREATE"),
        ("again", "MESSAGE_CREATE"),
    ]


def test_context_is_read_only() -> None:
    ctx = make(log=structlog.get_logger())
    with pytest.raises(AttributeError, match="read-only"):
        ctx.attempt = 2  # type: ignore[misc]
    assert ctx.attempt == 1
    assert "message_id='2:s:9'" in repr(ctx)


def test_context_needs_a_logger() -> None:
    with pytest.raises(TypeError, match="log or log_factory"):
        make()
