"""The ping decision and text, without RabbitMQ or Discord."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from spectacles.models import MessageCreate, Snowflake, decode_event
from spectacles.workers.ping import PingConfig, is_ping, latency_ms, pong_text

SENT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def message(content: str, *, bot: bool = False, **extra: Any) -> MessageCreate:
    body: dict[str, Any] = {
        "id": str(Snowflake.from_parts(int(SENT.timestamp() * 1000))),
        "channel_id": "1400000000000000002",
        "guild_id": "1400000000000000003",
        "author": {"id": "1400000000000000004", "username": "dave", "bot": bot},
        "content": content,
        "timestamp": SENT.isoformat(),
        **extra,
    }
    event = decode_event("MESSAGE_CREATE", json.dumps(body).encode())
    assert isinstance(event, MessageCreate)
    return event


@pytest.mark.parametrize("content", ["!ping", "  !ping\n"])
def test_the_command_is_a_ping(content: str) -> None:
    assert is_ping(message(content), PingConfig())


@pytest.mark.parametrize("content", ["!pingg", "ping", "!ping please", "", "!PING", "hello"])
def test_anything_else_is_not(content: str) -> None:
    assert not is_ping(message(content), PingConfig())


def test_bots_and_webhooks_are_ignored() -> None:
    assert not is_ping(message("!ping", bot=True), PingConfig())
    assert not is_ping(message("!ping", webhook_id="1400000000000000009"), PingConfig())


def test_latency_from_the_message_timestamp() -> None:
    msg = message("!ping")
    assert latency_ms(msg, SENT + timedelta(milliseconds=42)) == 42
    assert pong_text(msg, SENT + timedelta(milliseconds=42)) == "Pong! 42 ms"
    assert latency_ms(msg, SENT - timedelta(seconds=1)) == 0  # clock skew never goes negative


def test_command_and_prefix_from_env() -> None:
    assert PingConfig.from_env({}).command == "!ping"
    assert PingConfig.from_env({"PING_PREFIX": "?"}).command == "?ping"
    assert PingConfig.from_env({"PING_COMMAND": ".latency", "PING_PREFIX": "?"}).command == (
        ".latency"
    )
    assert is_ping(message("?ping"), PingConfig.from_env({"PING_PREFIX": "?"}))
    with pytest.raises(ValueError, match="PING_COMMAND"):
        PingConfig(command="  ")
