"""Gateway opcodes and the limits that apply to client payloads."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

__all__ = ["COMMAND_OPCODES", "MAX_PAYLOAD_BYTES", "Opcode"]


class Opcode(IntEnum):
    """Gateway opcodes (discord-protocol.md section 2)."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11
    REQUEST_SOUNDBOARD_SOUNDS = 31


# Opcodes other services may ask the gateway to send on a shard; everything else is the
# gateway's own session management and must never come from outside.
COMMAND_OPCODES: Final[frozenset[int]] = frozenset(
    {
        Opcode.PRESENCE_UPDATE,
        Opcode.VOICE_STATE_UPDATE,
        Opcode.REQUEST_GUILD_MEMBERS,
        Opcode.REQUEST_SOUNDBOARD_SOUNDS,
    }
)

# Discord closes the connection with 4002 when a client payload is larger than this.
MAX_PAYLOAD_BYTES: Final[int] = 4096
