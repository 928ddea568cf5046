"""Gateway close codes and what a client must do after each one.

`close_policy` is the single place that answers "may I reconnect / resume after code X?".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = ["RESUMABLE_CLOSE_CODE", "CloseCode", "ClosePolicy", "close_policy"]

# A client closing with 1000/1001 ends its session; any other code keeps it resumable.
# 4900 is outside Discord's range, so it can never be mistaken for a server verdict.
RESUMABLE_CLOSE_CODE: Final[int] = 4900


class CloseCode(IntEnum):
    """Websocket close codes the gateway uses (discord-protocol.md section 2)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


@dataclass(frozen=True, slots=True)
class ClosePolicy:
    """What to do after the gateway closed with `code`, and how to explain it to an operator."""

    code: int
    name: str
    reconnect: bool
    resume: bool
    fatal: bool
    cause: str
    fix: str


def _policy(code: CloseCode, reconnect: bool, resume: bool, cause: str, fix: str) -> ClosePolicy:
    return ClosePolicy(
        code=int(code),
        name=code.name,
        reconnect=reconnect,
        resume=resume,
        fatal=not reconnect,
        cause=cause,
        fix=fix,
    )


_C = CloseCode
_POLICIES: Final[dict[int, ClosePolicy]] = {
    p.code: p
    for p in (
        _policy(
            _C.NORMAL_CLOSURE,
            True,
            False,
            "the server ended the session normally (it also does so on a missed heartbeat)",
            "none: reconnect and IDENTIFY a new session",
        ),
        _policy(
            _C.GOING_AWAY,
            True,
            False,
            "the server is going away and ended the session",
            "none: reconnect and IDENTIFY a new session",
        ),
        _policy(
            _C.UNKNOWN_ERROR,
            True,
            True,
            "Discord hit an unknown error, or a heartbeat was missed",
            "none: reconnect and RESUME",
        ),
        _policy(
            _C.UNKNOWN_OPCODE,
            True,
            True,
            "the client sent an invalid opcode or an invalid payload for an opcode",
            "reconnect and RESUME; if it repeats, check the commands sent to this shard",
        ),
        _policy(
            _C.DECODE_ERROR,
            True,
            True,
            "the client sent a payload Discord could not decode (bad JSON or over 4096 bytes)",
            "reconnect and RESUME; if it repeats, check command payload sizes and encoding",
        ),
        _policy(
            _C.NOT_AUTHENTICATED,
            True,
            True,
            "the client sent a payload before IDENTIFY or RESUME",
            "reconnect and try RESUME; an INVALID_SESSION reply means IDENTIFY afresh",
        ),
        _policy(
            _C.AUTHENTICATION_FAILED,
            False,
            False,
            "the bot token is invalid (wrong, revoked or regenerated)",
            "set a valid bot token (DISCORD_TOKEN or `token` in gateway.toml), copied from the"
            " Developer Portal (Bot → Reset Token), without the `Bot ` prefix",
        ),
        _policy(
            _C.ALREADY_AUTHENTICATED,
            True,
            True,
            "the client sent more than one IDENTIFY on the same connection",
            "reconnect and RESUME; this is a client bug if it repeats",
        ),
        _policy(
            _C.INVALID_SEQ,
            True,
            False,
            "the sequence number sent with RESUME was invalid",
            "none: reconnect and IDENTIFY a new session",
        ),
        _policy(
            _C.RATE_LIMITED,
            True,
            True,
            "the client sent more than 120 payloads in 60 seconds",
            "reconnect and RESUME; slow down gateway commands sent to this shard",
        ),
        _policy(
            _C.SESSION_TIMED_OUT,
            True,
            False,
            "the session timed out",
            "none: reconnect and IDENTIFY a new session",
        ),
        _policy(
            _C.INVALID_SHARD,
            False,
            False,
            "the shard sent in IDENTIFY is invalid (shard id not below the shard count)",
            "fix `[shards] count` / `ids` (DISCORD_SHARD_COUNT / DISCORD_SHARD_IDS) so every id"
            " is below the count",
        ),
        _policy(
            _C.SHARDING_REQUIRED,
            False,
            False,
            "the session would handle too many guilds (over 2500 per shard)",
            "raise the shard count (DISCORD_SHARD_COUNT or `[shards] count`), or leave it unset to"
            " use the count recommended by GET /gateway/bot",
        ),
        _policy(
            _C.INVALID_API_VERSION,
            False,
            False,
            "the gateway API version in the URL is invalid or no longer supported",
            "connect with `?v=10`; check DISCORD_GATEWAY_URL / `[gateway] url`",
        ),
        _policy(
            _C.INVALID_INTENTS,
            False,
            False,
            "the intents sent in IDENTIFY contain an undefined bit",
            "use only valid intent names or bits in `intents` (DISCORD_INTENTS)",
        ),
        _policy(
            _C.DISALLOWED_INTENTS,
            False,
            False,
            "the bot asked for privileged intents (GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT)"
            " that are not enabled or approved for it",
            "enable the privileged intents in the Developer Portal (Bot → Privileged Gateway"
            " Intents) or remove them from `intents`",
        ),
    )
}


def close_policy(code: int) -> ClosePolicy:
    """Return the reconnect/resume policy for a close `code`.

    Codes Discord does not document (including a dropped connection, 1006) keep the session
    resumable, so the safe answer for them is "reconnect and RESUME".
    """
    policy = _POLICIES.get(code)
    if policy is not None:
        return policy
    return ClosePolicy(
        code=code,
        name="UNKNOWN",
        reconnect=True,
        resume=True,
        fatal=False,
        cause=f"the connection closed with undocumented code {code}",
        fix="none: reconnect and RESUME",
    )
