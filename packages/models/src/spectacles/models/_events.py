"""Gateway events (dispatch `d` payloads) and gateway commands as msgspec structs."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Final

import msgspec

from ._base import Model
from ._payloads import Guild, Member, Message, PartialApplication, UnavailableGuild, User
from ._snowflake import Snowflake

__all__ = [
    "Activity",
    "GatewayPayload",
    "GuildBanAdd",
    "GuildCreate",
    "GuildMemberAdd",
    "GuildMemberRemove",
    "GuildMemberUpdate",
    "GuildUpdate",
    "Hello",
    "Identify",
    "IdentifyProperties",
    "MessageCreate",
    "PresenceUpdate",
    "Ready",
    "Resume",
    "Seq",
]


Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""A gateway sequence number: bounded, because relays carry it as an AMQP int64 header and
resume from it; a hostile or broken server's ``"s": 1e30`` is a decode error, not a crash later."""

NULL: Final = msgspec.Raw(b"null")


class GatewayPayload(msgspec.Struct, kw_only=True):
    """The gateway envelope. `d` stays raw JSON so a relay can forward it without decoding.

    `bytes(payload.d)` is always the exact text Discord sent, ``null`` when it sent null or no
    `d` at all (so a relay never needs a None check on its hot path).
    """

    op: int
    d: msgspec.Raw = NULL
    s: Seq | None = None
    t: str | None = None


class Hello(Model, kw_only=True):
    """op 10 data: how often to heartbeat."""

    heartbeat_interval: int


class Ready(Model, kw_only=True):
    """READY dispatch: the session to resume later and the guilds that will follow."""

    v: int
    user: User
    guilds: list[UnavailableGuild] = []
    session_id: str
    resume_gateway_url: str
    shard: tuple[int, int] | None = None
    application: PartialApplication | None = None


class GuildCreate(Guild, kw_only=True):
    """GUILD_CREATE dispatch (an outage sends `UnavailableGuild` instead, see `decode_event`)."""

    threads: list[dict[str, Any]] = []
    presences: list[dict[str, Any]] = []
    voice_states: list[dict[str, Any]] = []


class GuildUpdate(Guild, kw_only=True):
    """GUILD_UPDATE dispatch: the guild after the change."""


class MessageCreate(Message, kw_only=True):
    """MESSAGE_CREATE dispatch."""


class GuildMemberAdd(Member, kw_only=True):
    """GUILD_MEMBER_ADD dispatch: the new member plus its guild."""

    user: User
    guild_id: Snowflake


class GuildMemberUpdate(Member, kw_only=True):
    """GUILD_MEMBER_UPDATE dispatch: the member after the change."""

    user: User
    guild_id: Snowflake


class GuildMemberRemove(Model, kw_only=True):
    """GUILD_MEMBER_REMOVE dispatch."""

    guild_id: Snowflake
    user: User


class GuildBanAdd(Model, kw_only=True):
    """GUILD_BAN_ADD dispatch."""

    guild_id: Snowflake
    user: User


class Activity(Model, kw_only=True, omit_defaults=True):
    """An activity in a presence update (`type` 0 playing, 1 streaming, 2 listening, ...)."""

    name: str
    type: int = 0
    url: str | None = None
    state: str | None = None


class PresenceUpdate(Model, kw_only=True):
    """op 3 data (and IDENTIFY's `presence`); Discord requires every field, so none is omitted."""

    since: int | None = None
    activities: list[Activity] = []
    status: str = "online"
    afk: bool = False


class IdentifyProperties(Model, kw_only=True):
    """Client properties sent in IDENTIFY."""

    os: str = sys.platform
    browser: str = "spectacles"
    device: str = "spectacles"


class Identify(Model, kw_only=True, omit_defaults=True):
    """op 2 data. Optional fields left at their defaults are not sent."""

    token: str
    properties: IdentifyProperties = msgspec.field(default_factory=IdentifyProperties)
    intents: int
    shard: tuple[int, int] | None = None
    presence: PresenceUpdate | None = None
    compress: bool = False
    large_threshold: int = 50

    def __repr__(self) -> str:
        # Never let the token reach a log line through a repr.
        return (
            f"Identify(token='[REDACTED]', intents={self.intents}, shard={self.shard},"
            f" compress={self.compress}, large_threshold={self.large_threshold})"
        )


class Resume(Model, kw_only=True):
    """op 6 data."""

    token: str
    session_id: str
    seq: int

    def __repr__(self) -> str:
        return f"Resume(token='[REDACTED]', session_id={self.session_id!r}, seq={self.seq})"
