"""Received command bodies that try to say one thing to the validator and another to Discord."""

from __future__ import annotations

import json
from typing import Any

import pytest

from spectacles.broker.commands import encode_command, parse_command
from spectacles.broker.errors import InvalidCommand

pytestmark = pytest.mark.rmq4  # also run against RabbitMQ 4 (make test-rmq4)

PRESENCE = b'{"since": null, "activities": [], "status": "idle", "afk": true}'


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        result.setdefault(key, value)
    return result


def _as_sent(body: bytes) -> bytes:
    return encode_command(*parse_command(body))


@pytest.mark.parametrize(
    "body",
    [
        b'{"op": 6, "d": %s, "op": 3}' % PRESENCE,  # a first-wins parser would read op 6
        b'{"op": 3, "d": {"token": "t", "session_id": "s", "seq": 1}, "d": %s}' % PRESENCE,
        b'{"op": 3, "d": %s, "s": 1, "t": "X"}' % PRESENCE,  # extra keys dropped
        b'{"op": 3, "d": {"status": "dnd", "since": null, "activities": [], "afk": true, '
        b'"status": "idle"}}',
    ],
)
def test_what_is_sent_is_what_was_validated_whichever_duplicate_wins(body: bytes) -> None:
    sent = _as_sent(body)
    expected = {"op": 3, "d": json.loads(PRESENCE)}
    assert json.loads(sent) == expected
    assert json.loads(sent, object_pairs_hook=_first_wins) == expected


def test_a_duplicate_op_resolving_to_resume_is_refused() -> None:
    with pytest.raises(InvalidCommand, match=r"opcode 6 \(RESUME\)"):
        parse_command(b'{"op": 3, "d": %s, "op": 6}' % PRESENCE)


@pytest.mark.parametrize(
    "body",
    [
        b'{"op": 3, "d": {"x": ' + b"[" * 2000 + b"]" * 2000 + b"}}",  # past the recursion limit
        b'{"op": 3, "d": {"since": null, "activities": [], "status": "\\ud800", "afk": true}}',
        b'{"op": 3}',
        b"[3]",
        b'{"op": 3, "d": %s' % PRESENCE,
    ],
)
def test_undecodable_bodies_are_invalid_commands_not_crashes(body: bytes) -> None:
    assert len(body) <= 4096
    with pytest.raises(InvalidCommand):
        parse_command(body)


def test_a_body_that_grows_past_4096_when_re_encoded_is_refused() -> None:
    # `1E2` is re-encoded `100.0`: 4096 bytes received, more once re-encoded (what is sent).
    head = b'{"op":3,"d":{"since":null,"status":"idle","afk":false,"activities":['
    items = b",".join([b'{"x":1E2}'] * ((4096 - len(head) - 4) // 10))
    body = head + items + b"]}}"
    body += b" " * (4096 - len(body))
    assert len(body) == 4096
    with pytest.raises(InvalidCommand, match="4096"):
        parse_command(body)
