"""The simulated Discord objects and their JSON shapes (as Discord's API sends them)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from spectacles.models import DISCORD_EPOCH_MS

__all__ = [
    "Ban",
    "Channel",
    "Guild",
    "Member",
    "Message",
    "Role",
    "User",
    "iso",
    "snowflake_time",
]

TEXT_CHANNEL: Final = 0
# Permissions of @everyone in a fresh guild (view, send, read history, ...), as Discord's string.
EVERYONE_PERMISSIONS: Final = "2248473465835073"
MODERATOR_PERMISSIONS: Final = "1099780063238"


def iso(moment: datetime) -> str:
    """Discord's timestamp format, e.g. 2017-07-11T17:27:07.299000+00:00."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def snowflake_time(snowflake: int) -> datetime:
    """When a snowflake id was created."""
    return datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, tz=UTC)


@dataclass(slots=True)
class User:
    """A Discord user; the id's timestamp is the account creation time."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False

    @property
    def created_at(self) -> datetime:
        """Account creation time, read off the id like Discord clients do."""
        return snowflake_time(self.id)

    def to_json(self) -> dict[str, Any]:
        """The user object."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "collectibles": None,
            "primary_guild": None,
        }
        if self.bot:
            data["bot"] = True
        return data

    def to_private_json(self) -> dict[str, Any]:
        """The user as `GET /users/@me` and READY give it to the bot itself (with `email` etc.)."""
        data = self.to_json()
        data.update(
            {
                "verified": True,
                "mfa_enabled": False,
                "locale": "en-US",
                "email": None,
                "premium_type": 0,
            }
        )
        return data


@dataclass(slots=True)
class Role:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    name: str
    permissions: str
    position: int = 0
    color: int = 0
    hoist: bool = False

    def to_json(self) -> dict[str, Any]:
        """The role object."""
        return {
            "id": str(self.id),
            "name": self.name,
            "color": self.color,
            "colors": {
                "primary_color": self.color,
                "secondary_color": None,
                "tertiary_color": None,
            },
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": self.permissions,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass(slots=True)
class Member:
    """A user's membership of one guild."""

    user: User
    joined_at: datetime
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    communication_disabled_until: datetime | None = None

    def timed_out(self, now: datetime) -> bool:
        """Whether a timeout is in force at `now`."""
        until = self.communication_disabled_until
        return until is not None and until > now

    def to_json(self, *, with_user: bool = True) -> dict[str, Any]:
        """The guild member object (`with_user=False` for the partial one in MESSAGE_CREATE)."""
        until = self.communication_disabled_until
        data: dict[str, Any] = {
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in self.roles],
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": iso(until) if until is not None else None,
            "avatar_decoration_data": None,
            "collectibles": None,
        }
        if with_user:
            data["user"] = self.user.to_json()
        return data


@dataclass(slots=True)
class Ban:
    """A ban of a user from a guild."""

    user: User
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ban object."""
        return {"user": self.user.to_json(), "reason": self.reason}


@dataclass(slots=True)
class Channel:
    """A guild text channel, with its message history (bounded)."""

    id: int
    guild_id: int
    name: str
    position: int
    topic: str | None = None
    history_limit: int = 5000
    messages: deque[Message] = field(init=False)

    def __post_init__(self) -> None:
        """Keep the newest `history_limit` messages."""
        self.messages = deque(maxlen=self.history_limit)

    @property
    def last_message_id(self) -> int | None:
        """Id of the newest message, as Discord reports it on the channel."""
        return self.messages[-1].id if self.messages else None

    def find(self, message_id: int) -> Message | None:
        """A message of this channel by id (newest first, as recent ones are asked for most)."""
        for message in reversed(self.messages):
            if message.id == message_id:
                return message
        return None

    def to_json(self) -> dict[str, Any]:
        """The channel object."""
        last = self.last_message_id
        return {
            "id": str(self.id),
            "type": TEXT_CHANNEL,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "topic": self.topic,
            "nsfw": False,
            "last_message_id": str(last) if last is not None else None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "default_auto_archive_duration": 4320,
            "flags": 0,
        }


@dataclass(slots=True)
class Message:
    """A message posted in a guild channel."""

    id: int
    channel_id: int
    guild_id: int
    author: User
    content: str
    timestamp: datetime
    type: int = 0
    mentions: list[User] = field(default_factory=list)
    mention_everyone: bool = False
    embeds: list[dict[str, Any]] = field(default_factory=list)
    message_reference: dict[str, Any] | None = None
    referenced_message: Message | None = None
    nonce: str | int | None = None

    def mentions_user(self, user_id: int) -> bool:
        """Whether `user_id` is mentioned (MESSAGE_CONTENT does not hide such messages)."""
        return any(u.id == user_id for u in self.mentions)

    def to_json(self) -> dict[str, Any]:
        """The message object as the REST API returns it."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "channel_id": str(self.channel_id),
            "author": self.author.to_json(),
            "content": self.content,
            "timestamp": iso(self.timestamp),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": self.mention_everyone,
            "mentions": [u.to_json() for u in self.mentions],
            "mention_roles": [],
            "attachments": [],
            "embeds": self.embeds,
            "components": [],
            "pinned": False,
            "flags": 0,
        }
        if self.nonce is not None:
            data["nonce"] = self.nonce
        if self.message_reference is not None:
            data["message_reference"] = self.message_reference
            ref = self.referenced_message
            data["referenced_message"] = ref.to_json() if ref is not None else None
        return data


@dataclass(slots=True)
class Guild:
    """A guild with its channels, roles, members and bans."""

    id: int
    name: str
    owner_id: int
    system_channel_id: int
    mod_log_channel_id: int
    verification_level: int = 0
    channels: dict[int, Channel] = field(default_factory=dict)
    roles: list[Role] = field(default_factory=list)
    members: dict[int, Member] = field(default_factory=dict)
    bans: dict[int, Ban] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The guild object (as `GET /guilds/{id}` and GUILD_UPDATE carry it)."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            # Deprecated (voice regions are per channel now); the docs' example sends null.
            "region": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": self.verification_level,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.to_json() for r in self.roles],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(self.system_channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_presences": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "description": None,
            "home_header": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw": False,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None,
            "incidents_data": None,
        }

    def to_gateway_create(self, joined_at: datetime) -> dict[str, Any]:
        """The GUILD_CREATE payload: the guild plus channels, members and session extras."""
        data = self.to_json()
        data.update(
            {
                "joined_at": iso(joined_at),
                "large": len(self.members) > 250,
                "unavailable": False,
                "member_count": len(self.members),
                "members": [m.to_json() for m in self.members.values()],
                "channels": [c.to_json() for c in self.channels.values()],
                "threads": [],
                "presences": [],
                "voice_states": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )
        return data
