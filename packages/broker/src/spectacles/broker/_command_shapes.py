"""The shape Discord requires of each gateway command's ``d``.

Discord answers a malformed command by closing the shard (4002), which the gateway survives by
resuming, but the command is lost and a worker that keeps sending it keeps the shard bouncing.
Checking the required fields here turns that into a clear error for the sender, or a dead letter
with a reason at the gateway. Unknown fields pass: Discord adds fields more often than it
changes them.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from spectacles.models import Opcode

__all__ = ["check_shape"]

_Snowflake = str | int


class _Presence(msgspec.Struct):
    since: int | float | None
    activities: list[dict[str, Any]]
    status: Literal["online", "dnd", "idle", "invisible", "offline"]
    afk: bool


class _VoiceState(msgspec.Struct):
    guild_id: _Snowflake
    channel_id: _Snowflake | None
    self_mute: bool
    self_deaf: bool


class _RequestMembers(msgspec.Struct):
    guild_id: _Snowflake
    limit: int | None = None
    query: str | None = None
    presences: bool = False
    user_ids: _Snowflake | list[_Snowflake] | None = None
    nonce: str | None = None


class _SoundboardSounds(msgspec.Struct):
    guild_ids: list[_Snowflake]


_DECODERS: Final[dict[int, msgspec.json.Decoder[Any]]] = {
    Opcode.PRESENCE_UPDATE: msgspec.json.Decoder(_Presence),
    Opcode.VOICE_STATE_UPDATE: msgspec.json.Decoder(_VoiceState),
    Opcode.REQUEST_GUILD_MEMBERS: msgspec.json.Decoder(_RequestMembers),
    Opcode.REQUEST_SOUNDBOARD_SOUNDS: msgspec.json.Decoder(_SoundboardSounds),
}


def check_shape(op: int, d: bytes) -> str | None:
    """Why ``d`` (JSON bytes) is not a valid ``op`` command, or ``None`` when it is."""
    decoder = _DECODERS.get(op)
    if decoder is None:
        return None
    try:
        value = decoder.decode(d)
    except msgspec.ValidationError as exc:
        return f"command op {op} ({Opcode(op).name}) 'd' is malformed: {exc}"
    except msgspec.DecodeError as exc:
        return f"command op {op} 'd' is not valid JSON: {exc}"
    if isinstance(value, _RequestMembers):
        if value.query is None and value.user_ids is None:
            return "command op 8 (REQUEST_GUILD_MEMBERS) needs 'query' or 'user_ids'"
        if value.nonce is not None and len(value.nonce.encode()) > 32:
            return "command op 8 (REQUEST_GUILD_MEMBERS) 'nonce' may be at most 32 bytes"
    return None
