"""The hand-packed publish frames decode to what was meant, by pamqp's (independent) decoder."""

from __future__ import annotations

import asyncio
import datetime
import decimal

import pytest
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from spectacles.broker._confirm import ConfirmTracker
from spectacles.broker._frames import (
    PropertiesTemplate,
    encode_content,
    encode_properties,
    encode_publish_method,
    encode_table,
)
from spectacles.broker.errors import ConnectionLost, PublishNacked, PublishReturned


def _frames(data: bytes) -> list[tuple[int, object]]:
    frames: list[tuple[int, object]] = []
    while data:
        used, channel, value = pamqp_frame.unmarshal(data)
        frames.append((channel, value))
        data = data[used:]
    return frames


def test_publish_method_frame() -> None:
    [(channel, method)] = _frames(encode_publish_method(1, "gateway", "MESSAGE_CREATE", True))
    assert channel == 1
    assert isinstance(method, commands.Basic.Publish)
    assert (method.exchange, method.routing_key, method.mandatory) == (
        "gateway",
        "MESSAGE_CREATE",
        True,
    )


def test_properties_and_body_round_trip() -> None:
    when = datetime.datetime(2026, 11, 29, 1, 2, 3, tzinfo=datetime.UTC)
    headers = {"shard_id": 7, "seq": -5, "guild_id": "1", "ok": True, "ratio": 0.5, "raw": b"\x00"}
    flags, props = encode_properties("application/json", headers, True, "7:s:1", when, "READY")
    body = b'{"v":10}'
    (_, header), (_, content) = _frames(encode_content(1, flags, props, body, 131064))
    assert isinstance(header, ContentHeader) and isinstance(content, ContentBody)
    assert header.body_size == len(body) and content.value == body
    properties = header.properties
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2
    assert properties.message_id == "7:s:1"
    assert properties.message_type == "READY"
    assert properties.timestamp == when
    assert properties.headers == {**headers, "raw": bytearray(b"\x00")}


@pytest.mark.parametrize(
    ("fixed", "variable", "message_id", "timestamp"),
    [
        ({"shard_id": 7}, {"seq": 5, "guild_id": "175928847299117063"}, "7:s:5", 1764380000.9),
        ({"shard_id": 7}, {"seq": 6}, "7:s:6", None),
        (None, None, None, None),
        (
            None,
            {"ok": True, "raw": b"\x00"},
            None,
            datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        ),
    ],
)
def test_properties_template_encodes_exactly_like_encode_properties(
    fixed: dict[str, object] | None,
    variable: dict[str, object] | None,
    message_id: str | None,
    timestamp: datetime.datetime | float | None,
) -> None:
    union = {**(fixed or {}), **(variable or {})} or None
    for content_type, persistent, type_ in (
        ("application/json", True, "MESSAGE_CREATE"),
        (None, False, None),
    ):
        template = PropertiesTemplate(
            content_type=content_type, headers=fixed, persistent=persistent, type_=type_
        )
        expected = encode_properties(content_type, union, persistent, message_id, timestamp, type_)
        assert template.encode(variable, message_id, timestamp) == expected


def test_properties_template_with_exotic_headers_decodes_to_the_union() -> None:
    template = PropertiesTemplate(
        content_type=None, headers={"price": decimal.Decimal("1.5")}, persistent=True, type_=None
    )
    flags, props = template.encode({"nested": {"a": [1, "b"]}, "seq": 1}, None, None)
    (_, header), _ = _frames(encode_content(1, flags, props, b"{}", 1000))
    assert isinstance(header, ContentHeader)
    assert header.properties.headers == {
        "price": decimal.Decimal("1.5"),
        "nested": {"a": [1, "b"]},
        "seq": 1,
    }


def test_exotic_header_values_use_the_general_encoder() -> None:
    table = {"nested": {"a": [1, "b"]}, "price": decimal.Decimal("1.5")}
    flags, props = encode_properties(None, table, False, None, None, None)
    (_, header), *_ = _frames(encode_content(1, flags, props, b"x", 100))
    assert isinstance(header, ContentHeader)
    assert header.properties.headers == table
    assert header.properties.delivery_mode == 1
    assert header.properties.content_type is None


def test_body_split_at_frame_max() -> None:
    body = bytes(range(256)) * 10
    flags, props = encode_properties(None, None, True, None, None, None)
    frames = _frames(encode_content(1, flags, props, body, 1000))
    chunks = [value.value for _, value in frames[1:] if isinstance(value, ContentBody)]
    assert [len(chunk) for chunk in chunks] == [1000, 1000, 560]
    assert b"".join(chunks) == body


def test_empty_body_sends_no_body_frame() -> None:
    flags, props = encode_properties(None, None, True, None, None, None)
    assert len(_frames(encode_content(1, flags, props, b"", 1000))) == 1


def test_a_str_body_is_a_clear_type_error() -> None:
    flags, props = encode_properties(None, None, True, None, None, None)
    for body in ("short", "long" * 1000):
        with pytest.raises(TypeError, match="body must be bytes"):
            encode_content(1, flags, props, body, 1000)  # type: ignore[arg-type]


def test_oversized_short_strings_and_integers_are_rejected() -> None:
    with pytest.raises(ValueError, match="routing key"):
        encode_publish_method(1, "x", "k" * 256, False)
    with pytest.raises(ValueError, match="64 bits"):
        encode_table({"huge": 2**64})
    with pytest.raises(ValueError, match="AMQP table"):
        encode_table({"bad": object()})


async def test_tracker_resolves_multiple_acks_nacks_and_returns() -> None:
    loop = asyncio.get_running_loop()
    tracker = ConfirmTracker()
    futures = [loop.create_future() for _ in range(6)]
    tags = [tracker.add(future, "x", f"k{index}") for index, future in enumerate(futures)]
    assert tags == [1, 2, 3, 4, 5, 6]
    tracker.ack(2, multiple=False)  # out of order single ack
    tracker.returned(4, 312, "NO_ROUTE")
    tracker.ack(4, multiple=True)  # covers 1, 3 and the returned 4
    assert len(tracker) == 2
    tracker.nack(6, multiple=True)  # covers 5 and 6
    assert len(tracker) == 0
    assert [future.exception() is None for future in futures[:3]] == [True, True, True]
    assert isinstance(futures[3].exception(), PublishReturned)
    nacked = futures[4].exception()
    assert isinstance(nacked, PublishNacked) and nacked.routing_key == "k4"
    assert isinstance(futures[5].exception(), PublishNacked)


class _Listener:
    def __init__(self) -> None:
        self.confirmed: list[int] = []
        self.failed: list[tuple[int, BaseException]] = []

    def publish_confirmed(self, token: int) -> None:
        self.confirmed.append(token)

    def publish_failed(self, token: int, error: BaseException) -> None:
        self.failed.append((token, error))


async def test_tracker_tells_listeners_and_futures_alike() -> None:
    loop = asyncio.get_running_loop()
    tracker = ConfirmTracker()
    listener = _Listener()
    future = loop.create_future()
    assert tracker.add_tracked(listener, 100, "x", "a") == 1
    assert tracker.add(future, "x", "b") == 2
    assert tracker.add_tracked(listener, 101, "x", "c") == 3
    assert tracker.add_tracked(listener, 102, "x", "d") == 4
    assert tracker.add_tracked(listener, 103, "x", "e") == 5
    tracker.ack(3, multiple=False)  # out of order
    tracker.returned(4, 312, "NO_ROUTE")
    tracker.ack(4, multiple=True)  # 1, 2 and the returned 4 (told once, as a failure)
    assert listener.confirmed == [101, 100]
    assert future.done() and future.exception() is None
    ((token, error),) = listener.failed
    assert token == 102 and isinstance(error, PublishReturned) and error.routing_key == "d"
    tracker.fail_all(ConnectionLost, "connection lost")
    assert [t for t, _ in listener.failed] == [102, 103]
    assert isinstance(listener.failed[1][1], ConnectionLost)
    assert len(tracker) == 0
