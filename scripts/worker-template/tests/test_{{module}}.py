"""Tests of {{name}}'s logic: no RabbitMQ, no Discord needed."""

from __future__ import annotations

import json
from typing import Any

from spectacles.models import MessageCreate, decode_event
from spectacles.workers.{{module}}.__main__ import build_worker
from spectacles.workers.{{module}}.handlers import COMMAND, reply_for


def message(content: str, *, bot: bool = False) -> MessageCreate:
    body: dict[str, Any] = {
        "id": "1100000000000000001",
        "channel_id": "1100000000000000002",
        "guild_id": "1100000000000000003",
        "author": {"id": "1100000000000000004", "username": "someone", "bot": bot},
        "content": content,
        "timestamp": "2024-01-01T00:00:00+00:00",
    }
    event = decode_event("MESSAGE_CREATE", json.dumps(body).encode())
    assert isinstance(event, MessageCreate)
    return event


def test_reply_for_the_command() -> None:
    assert reply_for(message(COMMAND)) == "Hello from {{name}}!"


def test_no_reply_for_other_messages_or_bots() -> None:
    assert reply_for(message("hello")) is None
    assert reply_for(message(COMMAND, bot=True)) is None


def test_worker_handles_message_create() -> None:
    assert build_worker().events == ("MESSAGE_CREATE",)
