"""Discord resources as msgspec structs: users, members, roles, channels, guilds, messages.

Field names and shapes follow Discord's JSON (API v10). Only fields a bot commonly needs are
typed; everything else Discord sends is ignored on decode. Snowflake fields are `Snowflake`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ._base import Model
from ._snowflake import Snowflake

__all__ = [
    "AllowedMentions",
    "Channel",
    "Guild",
    "Member",
    "Message",
    "MessageReference",
    "PartialApplication",
    "Role",
    "UnavailableGuild",
    "User",
]


class User(Model, kw_only=True):
    """A Discord user (or bot account)."""

    id: Snowflake
    username: str
    discriminator: str = "0"
    global_name: str | None = None
    avatar: str | None = None
    bot: bool = False
    system: bool = False
    banner: str | None = None
    accent_color: int | None = None
    public_flags: int = 0


class Role(Model, kw_only=True):
    """A guild role."""

    id: Snowflake
    name: str
    color: int = 0
    hoist: bool = False
    icon: str | None = None
    unicode_emoji: str | None = None
    position: int = 0
    permissions: str = "0"
    managed: bool = False
    mentionable: bool = False
    flags: int = 0


class Member(Model, kw_only=True):
    """A guild member; `user` is absent in the partial member attached to a message."""

    user: User | None = None
    nick: str | None = None
    avatar: str | None = None
    roles: list[Snowflake] = []
    joined_at: datetime | None = None
    premium_since: datetime | None = None
    deaf: bool = False
    mute: bool = False
    flags: int = 0
    pending: bool = False
    permissions: str | None = None
    communication_disabled_until: datetime | None = None


class Channel(Model, kw_only=True):
    """A guild or DM channel (`type` 0 text, 1 DM, 2 voice, 4 category, ...)."""

    id: Snowflake
    type: int
    guild_id: Snowflake | None = None
    position: int | None = None
    permission_overwrites: list[dict[str, Any]] = []
    name: str | None = None
    topic: str | None = None
    nsfw: bool = False
    last_message_id: Snowflake | None = None
    rate_limit_per_user: int = 0
    parent_id: Snowflake | None = None
    flags: int = 0


class UnavailableGuild(Model, kw_only=True):
    """A guild listed in READY, or sent in GUILD_CREATE/GUILD_DELETE during an outage."""

    id: Snowflake
    unavailable: bool = True


class Guild(Model, kw_only=True):
    """A guild; the GUILD_CREATE-only fields (`members`, `channels`, ...) default to empty.

    `verification_level`: 0 NONE, 1 LOW, 2 MEDIUM, 3 HIGH, 4 VERY_HIGH.
    """

    id: Snowflake
    name: str
    icon: str | None = None
    owner_id: Snowflake
    afk_channel_id: Snowflake | None = None
    afk_timeout: int = 0
    verification_level: int = 0
    default_message_notifications: int = 0
    explicit_content_filter: int = 0
    roles: list[Role] = []
    features: list[str] = []
    mfa_level: int = 0
    application_id: Snowflake | None = None
    system_channel_id: Snowflake | None = None
    system_channel_flags: int = 0
    rules_channel_id: Snowflake | None = None
    description: str | None = None
    premium_tier: int = 0
    preferred_locale: str = "en-US"
    nsfw_level: int = 0
    # GUILD_CREATE extras (also absent from REST responses):
    joined_at: datetime | None = None
    large: bool = False
    unavailable: bool = False
    member_count: int | None = None
    members: list[Member] = []
    channels: list[Channel] = []


class MessageReference(Model, kw_only=True, omit_defaults=True):
    """Points at another message (replies, crossposts); also sent in REST to reply."""

    type: int = 0
    message_id: Snowflake | None = None
    channel_id: Snowflake | None = None
    guild_id: Snowflake | None = None
    fail_if_not_exists: bool | None = None


class AllowedMentions(Model, kw_only=True):
    """Which mentions in an outgoing message may ping (`parse`: "roles", "users", "everyone")."""

    parse: list[str] = []
    roles: list[Snowflake] = []
    users: list[Snowflake] = []
    replied_user: bool = False


class Message(Model, kw_only=True):
    """A message; in MESSAGE_CREATE it also carries `guild_id` and a partial `member`.

    `content` is empty unless the bot has MESSAGE_CONTENT (or is mentioned / in a DM).
    `type`: 0 DEFAULT, 7 USER_JOIN, 19 REPLY, ...
    """

    id: Snowflake
    channel_id: Snowflake
    author: User
    content: str = ""
    timestamp: datetime
    edited_timestamp: datetime | None = None
    tts: bool = False
    mention_everyone: bool = False
    mentions: list[User] = []
    mention_roles: list[Snowflake] = []
    attachments: list[dict[str, Any]] = []
    embeds: list[dict[str, Any]] = []
    nonce: int | str | None = None
    pinned: bool = False
    webhook_id: Snowflake | None = None
    type: int = 0
    application_id: Snowflake | None = None
    flags: int = 0
    message_reference: MessageReference | None = None
    referenced_message: Message | None = None
    components: list[dict[str, Any]] = []
    guild_id: Snowflake | None = None
    member: Member | None = None


class PartialApplication(Model, kw_only=True):
    """The application object in READY."""

    id: Snowflake
    flags: int = 0
