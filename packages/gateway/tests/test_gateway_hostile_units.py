"""Size bounds of the transport decompressors, the payload salvage scanner and their config.

Pure functions and in-memory decompressors: the end-to-end behaviour (shard survives, resumes,
relays) is in test_gateway_hostile.py.
"""

from __future__ import annotations

import json
import zlib

import msgspec
import pytest
import zstandard

from spectacles.gateway import ConfigError, parse_config
from spectacles.gateway.relay import _guild_id
from spectacles.gateway.salvage import Salvaged, salvage_envelope, top_level_fields
from spectacles.gateway.transport import (
    PayloadTooLarge,
    SizeLimits,
    _Plain,
    _ZlibStream,
    _ZstdStream,
)

LIMITS = SizeLimits(message=64 * 1024, payload=100_000)
BASE = {"token": "tok", "events": ["READY"], "intents": ["GUILDS"]}


def _zlib_frames(*payloads: bytes) -> list[bytes]:
    compressor = zlib.compressobj()
    return [compressor.compress(p) + compressor.flush(zlib.Z_SYNC_FLUSH) for p in payloads]


def _zstd_frames(*payloads: bytes) -> list[bytes]:
    compressor = zstandard.ZstdCompressor().compressobj()
    flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
    return [compressor.compress(p) + compressor.flush(flush) for p in payloads]


@pytest.mark.parametrize(
    ("frames", "decoder"),
    [(_zlib_frames, _ZlibStream), (_zstd_frames, _ZstdStream)],
    ids=["zlib-stream", "zstd-stream"],
)
def test_payload_at_the_bound_inflates_and_one_byte_more_is_refused(
    frames: object, decoder: type[_ZlibStream | _ZstdStream]
) -> None:
    at_bound = b"a" * LIMITS.payload
    over = b"b" * (LIMITS.payload + 1)
    first, second = frames(at_bound, over)  # type: ignore[operator]
    stream = decoder(LIMITS)
    assert stream.feed(first) == at_bound
    with pytest.raises(PayloadTooLarge, match=r"gateway\.max_payload_size"):
        stream.feed(second)


def test_zlib_frames_without_sync_flush_are_refused_past_the_message_bound() -> None:
    stream = _ZlibStream(LIMITS)
    compressor = zlib.compressobj(level=0)  # stored: compressed size ~ input size
    chunk = compressor.compress(b"x" * 16 * 1024) + compressor.flush(zlib.Z_FULL_FLUSH)[:-4]
    with pytest.raises(PayloadTooLarge, match=r"gateway\.max_message_size"):
        for _ in range(LIMITS.message // len(chunk) + 2):
            assert stream.feed(chunk) is None


def test_plain_payload_over_the_bound_is_refused() -> None:
    assert _Plain(LIMITS).feed(b"x" * LIMITS.payload) == b"x" * LIMITS.payload
    with pytest.raises(PayloadTooLarge):
        _Plain(LIMITS).feed(b"x" * (LIMITS.payload + 1))


def test_top_level_fields_never_descend_into_values() -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    data = b'{"op": 0, "x": %s, "t": "A\\"}", "s": 5, "d": {"a": "\\ud800"}}' % nested
    fields = top_level_fields(data)
    assert fields == {
        b"op": b"0",
        b"x": nested,
        b"t": b'"A\\"}"',
        b"s": b"5",
        b"d": b'{"a": "\\ud800"}',
    }
    assert top_level_fields(b'{"op": 1, "op": 2}') == {b"op": b"2"}  # last wins, as msgspec
    for not_an_object in (b"[1]", b'"s"', b"", b'{"op": 1', b"}"):
        assert top_level_fields(not_an_object) is None


def test_salvage_envelope_decodes_op_s_t_strictly() -> None:
    assert salvage_envelope(b'{"t":"X","s":3,"op":0,"d":{"c":"\\udc00"}}') == Salvaged(
        0, 3, "X", b'{"c":"\\udc00"}'
    )
    for bad in (
        b'{"op":0,"s":18446744073709551616,"t":"X","d":{}}',  # seq beyond int64
        b'{"op":0,"s":-1,"t":"X","d":{}}',
        b'{"op":0,"s":1,"t":"\\ud800","d":{}}',  # the name itself is undecodable
        b'{"s":1,"t":"X","d":{}}',  # no op
        b'{"op":0,"s":1,"t":"X","d":}',
    ):
        assert salvage_envelope(bad) is None, bad


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (b'{"guild_id":"81384788765712384"}', "81384788765712384"),
        (b'{"guild_id":81384788765712384}', "81384788765712384"),
        (b'{"guild_id":"18446744073709551615"}', "18446744073709551615"),
        (b'{"guild_id":"18446744073709551616"}', None),
        (b'{"guild_id":18446744073709551616}', None),
        (b'{"guild_id":-1}', None),
        (b'{"guild_id":"12a"}', None),
        (b'{"guild_id":"\xd9\xa1"}', None),  # a non-ASCII digit
        (b'{"guild_id":""}', None),
        (b'{"guild_id":"' + b"9" * 100_000 + b'"}', None),
        (b'{"guild_id":[1]}', None),
        (b'{"guild_id":"7","c":"\\ud800"}', "7"),  # found by the salvage scanner
        (b'{"guild_id":"7","c":' + b"[" * 5000 + b"]" * 5000 + b"}", "7"),
        (b'{"c":"\\ud800"}', None),
    ],
)
def test_guild_id_header_is_a_snowflake_or_nothing(d: bytes, expected: str | None) -> None:
    assert _guild_id("MESSAGE_CREATE", msgspec.Raw(d)) == expected


def test_size_bounds_are_configurable_and_named_when_invalid() -> None:
    config = parse_config(BASE, {})
    assert config.gateway.max_message_size == config.gateway.max_payload_size == 64 * 1024 * 1024
    custom = parse_config({**BASE, "gateway": {"max_payload_size": 8 * 1024 * 1024}}, {})
    assert custom.gateway.max_payload_size == 8 * 1024 * 1024
    assert json.loads(json.dumps(custom.redacted()))["gateway"]["max_payload_size"] == 8 * 1024**2
    for key, value in (("max_message_size", 1024), ("max_payload_size", "64MiB")):
        with pytest.raises(ConfigError) as info:
            parse_config({**BASE, "gateway": {key: value}}, {})
        assert info.value.key == f"gateway.{key}"
