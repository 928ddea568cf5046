"""JSON encoding/decoding with snowflakes as strings, and the event-name → model registry.

Decoders are built once per type and cached: building one costs far more than a decode, and
decoding event bodies is every worker's hot path.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

from ._events import (
    GatewayPayload,
    GuildBanAdd,
    GuildCreate,
    GuildMemberAdd,
    GuildMemberRemove,
    GuildMemberUpdate,
    GuildUpdate,
    MessageCreate,
    Ready,
)
from ._interactions import Interaction
from ._payloads import UnavailableGuild
from ._snowflake import Snowflake

__all__ = [
    "EVENT_MODELS",
    "DecodeError",
    "decode_event",
    "decode_model",
    "decode_payload",
    "encode",
    "from_builtins",
    "to_builtins",
]

T = TypeVar("T")

# Dispatch events decoded into a typed struct; every other event decodes to a plain dict.
EVENT_MODELS: Final[dict[str, type[msgspec.Struct]]] = {
    "READY": Ready,
    "GUILD_CREATE": GuildCreate,
    "GUILD_UPDATE": GuildUpdate,
    "MESSAGE_CREATE": MessageCreate,
    "GUILD_MEMBER_ADD": GuildMemberAdd,
    "GUILD_MEMBER_UPDATE": GuildMemberUpdate,
    "GUILD_MEMBER_REMOVE": GuildMemberRemove,
    "GUILD_BAN_ADD": GuildBanAdd,
    "INTERACTION_CREATE": Interaction,
}


class DecodeError(ValueError):
    """Raised when bytes are not valid JSON or do not match the expected model.

    `target` names what was being decoded (an event name or a type), `reason` is msgspec's
    message, which includes the JSON path of the offending field (e.g. ``at `$.author.id```).
    """

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"cannot decode {target}: {reason}")


_MAX_SNOWFLAKE: Final[int] = (1 << 64) - 1
_MAX_SNOWFLAKE_DIGITS: Final[int] = len(str(_MAX_SNOWFLAKE))
_new_int = int.__new__

# Recently decoded snowflake strings -> Snowflake. Guild, channel and role ids repeat in almost
# every event, and parsing a 19-digit string into an int subclass is most of a dec_hook call
# (see bench/results/decode-*.md). Snowflakes are immutable, so sharing instances is safe;
# the cache is cleared when full, which bounds memory without LRU bookkeeping.
_SNOWFLAKE_CACHE_SIZE: Final[int] = 4096
_snowflake_cache: dict[str, Snowflake] = {}


def _dec_hook(type_: type, obj: Any) -> Any:
    # Only called for types msgspec does not know natively; here that is only Snowflake.
    if type_ is Snowflake:
        if obj.__class__ is str:
            value = _snowflake_cache.get(obj)
            if value is not None:
                return value
            if obj.isascii() and obj.isdigit() and len(obj) <= _MAX_SNOWFLAKE_DIGITS:
                value = _new_int(Snowflake, obj)
                if value <= _MAX_SNOWFLAKE:
                    if len(_snowflake_cache) >= _SNOWFLAKE_CACHE_SIZE:
                        _snowflake_cache.clear()
                    _snowflake_cache[obj] = value
                    return value
        elif obj.__class__ is int or obj.__class__ is Snowflake:
            return Snowflake(obj)
        raise ValueError(f"expected a snowflake (decimal string or int), got {obj!r}")
    # msgspec's hook protocol: NotImplementedError means "not a type this hook handles".
    raise NotImplementedError(f"no decoder for {type_!r}")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Snowflake):
        return int.__repr__(obj)
    # msgspec's hook protocol: NotImplementedError makes it report the unsupported type.
    raise NotImplementedError(f"cannot encode objects of type {type(obj).__name__}")


_ENCODER: Final = msgspec.json.Encoder(enc_hook=_enc_hook)
_PAYLOAD_DECODER: Final = msgspec.json.Decoder(GatewayPayload)
_MAPPING_DECODER: Final = msgspec.json.Decoder(dict[str, Any])
_UNAVAILABLE_DECODER: Final = msgspec.json.Decoder(UnavailableGuild, dec_hook=_dec_hook)
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS[type_] = msgspec.json.Decoder(type_, dec_hook=_dec_hook)
    return decoder


_EVENT_DECODERS: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    name: _decoder(model) for name, model in EVENT_MODELS.items()
}


def decode_event(name: str, raw: bytes | str) -> Any:
    """Decode a dispatch's `d` into its model from `EVENT_MODELS`, or a plain dict.

    GUILD_CREATE during an outage (``{"id": ..., "unavailable": true}``) gives an
    `UnavailableGuild`. Raises `DecodeError` on malformed input.
    """
    decoder = _EVENT_DECODERS.get(name)
    try:
        if decoder is None:
            return _MAPPING_DECODER.decode(raw)
        return decoder.decode(raw)
    except msgspec.DecodeError as exc:
        if name == "GUILD_CREATE":
            try:
                guild = _UNAVAILABLE_DECODER.decode(raw)
            except msgspec.DecodeError:
                pass
            else:
                if guild.unavailable:
                    return guild
        raise DecodeError(name, str(exc)) from None


def decode_model(type_: type[T], raw: bytes | str) -> T:
    """Decode JSON into `type_` (a model, or any msgspec-supported type such as `list[User]`)."""
    try:
        result: T = _decoder(type_).decode(raw)
    except msgspec.DecodeError as exc:
        raise DecodeError(getattr(type_, "__name__", repr(type_)), str(exc)) from None
    return result


def decode_payload(raw: bytes | str) -> GatewayPayload:
    """Decode a gateway envelope, leaving `d` as raw JSON bytes."""
    try:
        return _PAYLOAD_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise DecodeError("gateway payload", str(exc)) from None


def encode(obj: Any) -> bytes:
    """Encode a model (or any JSON-able value) to JSON bytes, snowflakes as strings."""
    return _ENCODER.encode(obj)


def to_builtins(obj: Any) -> Any:
    """Convert a model into dicts/lists/strings as it would appear in JSON."""
    return msgspec.to_builtins(obj, enc_hook=_enc_hook)


def from_builtins(type_: type[T], obj: Any) -> T:
    """Build `type_` from dicts/lists (snowflakes as ints or strings); raises `DecodeError`."""
    try:
        return msgspec.convert(obj, type_, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise DecodeError(getattr(type_, "__name__", repr(type_)), str(exc)) from None
