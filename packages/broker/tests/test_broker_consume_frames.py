"""The consume path's byte-level pieces: property decoding against pamqp, and ack coalescing."""

from __future__ import annotations

import datetime
import decimal

import pytest
from pamqp import commands

from spectacles.broker._acks import AckWindow, encode_ack, encode_nack
from spectacles.broker._properties import decode_properties, decode_table


def _encoded(properties: commands.Basic.Properties) -> tuple[int, bytes]:
    raw = properties.marshal()
    return int.from_bytes(raw[:2], "big"), raw[2:]


def test_every_basic_property_decodes_as_pamqp_encoded_it() -> None:
    stamp = datetime.datetime(2026, 12, 7, 6, 0, tzinfo=datetime.UTC)
    source = commands.Basic.Properties(
        content_type="application/json",
        content_encoding="gzip",
        headers={
            "shard_id": 3,
            "name": "é-ü",
            "ok": True,
            "ratio": 0.5,
            "raw": bytearray(b"\x00\x01"),
        },
        delivery_mode=2,
        priority=7,
        correlation_id="corr",
        reply_to="amq.rabbitmq.reply-to",
        expiration="60000",
        message_id="0:abc:1",
        timestamp=stamp,
        message_type="MESSAGE_CREATE",
        user_id="guest",
        app_id="spectacles",
    )
    flags, raw = _encoded(source)
    got = decode_properties(b"pad" + raw, 3, flags)
    assert (got.content_type, got.content_encoding) == ("application/json", "gzip")
    assert got.headers == {
        "shard_id": 3,
        "name": "é-ü",
        "ok": True,
        "ratio": 0.5,
        "raw": b"\x00\x01",
    }
    assert (got.delivery_mode, got.priority) == (2, 7)
    assert (got.correlation_id, got.reply_to, got.expiration) == (
        "corr",
        "amq.rabbitmq.reply-to",
        "60000",
    )
    assert (got.message_id, got.timestamp, got.type) == ("0:abc:1", stamp, "MESSAGE_CREATE")
    assert (got.user_id, got.app_id) == ("guest", "spectacles")


def test_absent_properties_read_as_none() -> None:
    flags, raw = _encoded(commands.Basic.Properties(message_id="only"))
    got = decode_properties(raw, 0, flags)
    assert got.message_id == "only"
    assert got.headers is None and got.content_type is None and got.timestamp is None


@pytest.mark.parametrize(
    "table",
    [
        {"nested": {"a": 1}, "plain": "x"},
        {"list": [1, "two"], "n": 5},
        {"when": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)},
        {"price": decimal.Decimal("1.25")},
    ],
)
def test_exotic_header_values_fall_back_to_pamqp(table: dict[str, object]) -> None:
    flags, raw = _encoded(commands.Basic.Properties(headers=table))
    got = decode_properties(raw, 0, flags)
    assert got.headers == table


def test_table_integers_of_every_width() -> None:
    # RabbitMQ and other clients send b/B/s/u/I/i/l: each decodes to the same int.
    body = b"".join(
        (
            b"\x01ab\xfe",
            b"\x01BB\xfe",
            b"\x01ss\xff\xfe",
            b"\x01uu\xff\xfe",
            b"\x01II\xff\xff\xff\xfe",
            b"\x01ii\xff\xff\xff\xfe",
            b"\x01ll\xff\xff\xff\xff\xff\xff\xff\xfe",
            b"\x01vV",
        )
    )
    assert decode_table(body, 0, len(body)) == {
        "a": -2,
        "B": 254,
        "s": -2,
        "u": 65534,
        "I": -2,
        "i": 4294967294,
        "l": -2,
        "v": None,
    }


def test_acks_in_order_become_one_multiple_ack() -> None:
    window = AckWindow()
    for tag in (1, 2, 3, 4):
        window.add(tag)
    assert window.take() == [(4, True)]
    window.add(5)
    assert window.take() == [(5, False)]
    assert window.take() == []


def test_an_unsettled_tag_is_never_covered_by_a_multiple_ack() -> None:
    window = AckWindow()
    for tag in (2, 3, 5):  # 1 and 4 are still being handled
        window.add(tag)
    assert window.take() == [(2, False), (3, False), (5, False)]
    window.add(1)
    assert window.take() == [(1, True)]  # 1..3 settled now: one frame, 2 and 3 already acked
    window.settled(4)  # nacked on its own
    window.add(6)
    assert window.take() == [(6, False)]  # the next tag alone: a plain ack does the same


def test_ack_and_nack_frames() -> None:
    assert encode_ack(3, 9, True) == (
        b"\x01\x00\x03\x00\x00\x00\x0d\x00\x3c\x00\x50" + (9).to_bytes(8, "big") + b"\x01\xce"
    )
    assert encode_nack(3, 9, True)[7:11] == b"\x00\x3c\x00\x78"
    assert encode_nack(3, 9, True)[-2:] == b"\x02\xce"  # requeue, not multiple
