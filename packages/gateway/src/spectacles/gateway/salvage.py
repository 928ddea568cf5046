r"""Top-level fields of a JSON object that msgspec refuses as a whole (the cold path).

msgspec rejects valid-grammar JSON it cannot represent (lone UTF-16 surrogate escapes such as
`"\ud800"`) and stops at Python's recursion limit on deep nesting, even inside a `Raw` field it
would not decode. A gateway payload with either inside `d` still has a readable `op`, `s` and
`t`: this scanner finds them without descending into any value (one regex pass, no recursion),
so the shard can relay such an event as received instead of dropping or looping on it.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from spectacles.models import Seq

__all__ = ["Salvaged", "salvage_envelope", "top_level_fields"]

# A sequence number: what fits an AMQP signed 64-bit header and a resume point.

# A whole string (escapes skipped) or one structural character.
_TOKENS: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[][{},:]')
_QUOTE: Final = ord('"')
_OPEN: Final = frozenset(b"{[")
_CLOSE: Final = frozenset(b"}]")
_COLON: Final = ord(":")
_COMMA: Final = ord(",")

_decode_op: Final = msgspec.json.Decoder(int).decode
_decode_seq: Final = msgspec.json.Decoder(Seq | None).decode
_decode_name: Final = msgspec.json.Decoder(str | None).decode


class Salvaged(msgspec.Struct, frozen=True):
    """A payload's envelope read field by field; `d` as received."""

    op: int
    s: int | None
    t: str | None
    d: bytes


def top_level_fields(data: bytes) -> dict[bytes, bytes] | None:
    """Each top-level key of the JSON object `data` and its value's raw bytes, else None.

    Keys are compared as written (escapes not decoded); a duplicate key keeps its last value,
    as msgspec does. Values are not validated, only delimited.
    """
    fields: dict[bytes, bytes] = {}
    depth = 0
    key: bytes | None = None
    value_start = -1
    for match in _TOKENS.finditer(data):
        start = match.start()
        char = data[start]
        if char == _QUOTE:
            if depth == 0:
                return None
            if depth == 1 and value_start < 0:
                key = data[start + 1 : match.end() - 1]
        elif char in _OPEN:
            if depth == 0 and char != ord("{"):
                return None
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth == 0:
                if key is not None and value_start >= 0:
                    fields[key] = data[value_start:start].strip()
                return fields
        elif depth == 1 and char == _COLON:
            value_start = match.end()
        elif depth == 1 and char == _COMMA:
            if key is not None and value_start >= 0:
                fields[key] = data[value_start:start].strip()
            key, value_start = None, -1
    return None


def salvage_envelope(data: bytes) -> Salvaged | None:
    """`op`, `s`, `t` (strictly decoded) and raw `d` of a gateway payload, else None."""
    fields = top_level_fields(data)
    if fields is None or b"op" not in fields:
        return None
    try:
        op = _decode_op(fields[b"op"])
        seq = _decode_seq(fields.get(b"s", b"null"))
        name = _decode_name(fields.get(b"t", b"null"))
    except msgspec.DecodeError:
        return None
    d = fields.get(b"d", b"null")
    if not d:
        return None
    return Salvaged(op, seq, name, d)
