"""The in-memory Discord: users, guilds, channels, members and messages, built from a seed.

The world only holds state and checks ids; emitting the gateway dispatch that goes with each
change is the job of `_actions.py`, so REST and the control API share one code path.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from spectacles.models import DISCORD_EPOCH_MS, SnowflakeGenerator
from spectacles.simulator._config import SimulatorConfig
from spectacles.simulator._entities import (
    EVERYONE_PERMISSIONS,
    MODERATOR_PERMISSIONS,
    Ban,
    Channel,
    Guild,
    Member,
    Message,
    Role,
    User,
)
from spectacles.simulator._errors import UnknownEntityError, ValidationError

__all__ = ["World"]

# Seeded ids are dated before this instant so a given seed always yields the same world.
REFERENCE_MS: Final = 1_735_689_600_000  # 2025-01-01T00:00:00Z
DAY_MS: Final = 86_400_000
MAX_CONTENT: Final = 2000
MAX_TIMEOUT: Final = timedelta(days=28)
USER_JOIN_TYPE: Final = 7
REPLY_TYPE: Final = 19
_MENTION: Final = re.compile(r"<@!?(\d{1,20})>")

_ADJECTIVES: Final = (
    "brave", "calm", "eager", "fuzzy", "gentle", "happy", "jolly", "keen", "lucky", "mellow",
    "nimble", "proud", "quiet", "rapid", "sunny", "tidy", "vivid", "witty", "zesty", "bold",
)  # fmt: skip
_NOUNS: Final = (
    "otter", "falcon", "badger", "lynx", "heron", "panda", "koala", "raven", "tiger", "walrus",
    "beaver", "gecko", "moose", "puffin", "quokka", "salmon", "turtle", "wombat", "yak", "zebra",
)  # fmt: skip
_GUILD_WORDS: Final = ("Garden", "Harbor", "Workshop", "Lounge", "Guild", "Club", "Hub", "Den")
_CHANNEL_NAMES: Final = ("general", "mod-log", "random", "help", "showcase", "off-topic", "memes")


def _snowflake(timestamp_ms: int, worker: int, increment: int = 0) -> int:
    return ((timestamp_ms - DISCORD_EPOCH_MS) << 22) | (worker << 17) | (increment & 0xFFF)


@dataclass(frozen=True, slots=True)
class BanResult:
    """What a ban changed: the user, the membership it ended and the messages it deleted."""

    user: User
    removed: Member | None
    deleted: list[Message]


class World:
    """All simulated state; deterministic from `config.seed` apart from what happens at run time."""

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._rng = random.Random(config.seed)
        self._ids = SnowflakeGenerator(worker_id=1, process_id=0)
        self._names: set[str] = set()
        self._join_counter = 0
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        bot_ms = REFERENCE_MS - self._rng.randint(400, 900) * DAY_MS
        self.bot = User(_snowflake(bot_ms, 0), config.bot_username, config.bot_username, bot=True)
        self.users[self.bot.id] = self.bot
        self.application_id = self.bot.id
        for index in range(config.guilds):
            self._seed_guild(index)

    # -- generation -------------------------------------------------------------------------

    def _unique_name(self, prefix: str | None = None) -> str:
        rng = self._rng
        base = prefix or f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NOUNS)}"
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}{n}"
        self._names.add(name)
        return name

    def _seed_guild(self, index: int) -> None:
        rng, config = self._rng, self.config
        created_ms = REFERENCE_MS - rng.randint(100, 1500) * DAY_MS - rng.randint(0, DAY_MS)
        # Land guild `index` on shard `index % shards` for the recommended shard count.
        offset = created_ms - DISCORD_EPOCH_MS
        created_ms += (index % config.shards - offset % config.shards) % config.shards
        guild_id = _snowflake(created_ms, 0)
        owner = self._seed_user(rng.randint(200, 3000))
        channels = [
            Channel(
                _snowflake(created_ms + 1 + i, 0),
                guild_id,
                _CHANNEL_NAMES[i] if i < len(_CHANNEL_NAMES) else f"channel-{i}",
                i,
            )
            for i in range(config.channels_per_guild)
        ]
        guild = Guild(
            id=guild_id,
            name=f"{rng.choice(_ADJECTIVES).capitalize()} {rng.choice(_GUILD_WORDS)} {index + 1}",
            owner_id=owner.id,
            system_channel_id=channels[0].id,
            mod_log_channel_id=channels[1].id,
            verification_level=1,
            channels={c.id: c for c in channels},
            roles=[
                Role(guild_id, "@everyone", EVERYONE_PERMISSIONS),
                Role(
                    _snowflake(created_ms + 100, 0), "Moderator", MODERATOR_PERMISSIONS, 1, 0x3498DB
                ),
            ],
        )
        self.guilds[guild_id] = guild
        self.channels.update(guild.channels)
        guild_created = datetime.fromtimestamp(created_ms / 1000, tz=UTC)
        members = [owner] + [
            self._seed_user(rng.randint(30, 3000))
            for _ in range(max(config.members_per_guild - 1, 0))
        ]
        for user in members[: config.members_per_guild]:
            # Nobody joined before both the account and the guild existed.
            earliest = max(user.created_at, guild_created)
            span = (datetime.fromtimestamp(REFERENCE_MS / 1000, tz=UTC) - earliest).total_seconds()
            joined = earliest + timedelta(seconds=rng.uniform(0, max(span, 0)))
            guild.members[user.id] = Member(user, joined)
        guild.members[self.bot.id] = Member(self.bot, guild_created + timedelta(days=1))

    def _seed_user(self, age_days: int) -> User:
        created_ms = REFERENCE_MS - age_days * DAY_MS - self._rng.randint(0, DAY_MS)
        user_id = _snowflake(created_ms, 0, self._rng.randint(0, 4095))
        name = self._unique_name()
        user = User(user_id, name, name.replace("_", " ").title())
        self.users[user.id] = user
        return user

    # -- lookups ----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The simulator's current time (injectable for tests)."""
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    def next_id(self) -> int:
        """A fresh snowflake stamped with the current time."""
        return int(self._ids.next(int(self._clock() * 1000)))

    def guild(self, guild_id: int) -> Guild:
        """A guild by id, else 10004."""
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise UnknownEntityError("guild", guild_id)
        return guild

    def channel(self, channel_id: int) -> Channel:
        """A channel by id, else 10003."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise UnknownEntityError("channel", channel_id)
        return channel

    def user(self, user_id: int) -> User:
        """A user by id, else 10013."""
        user = self.users.get(user_id)
        if user is None:
            raise UnknownEntityError("user", user_id)
        return user

    def member(self, guild_id: int, user_id: int) -> Member:
        """A membership, else 10004 (guild) or 10007 (member)."""
        member = self.guild(guild_id).members.get(user_id)
        if member is None:
            raise UnknownEntityError("member", user_id)
        return member

    def shard_of(self, guild_id: int, num_shards: int) -> int:
        """Discord's shard formula."""
        return (guild_id >> 22) % num_shards

    def random_member(self, guild_id: int, *, rng: random.Random | None = None) -> Member:
        """A human member of the guild, e.g. the author of a simulated chat line."""
        humans = [m for m in self.guild(guild_id).members.values() if not m.user.bot]
        if not humans:
            raise ValidationError(50035, "the guild has no human members to speak")
        return (rng or self._rng).choice(humans)

    # -- mutations --------------------------------------------------------------------------

    def post_message(
        self,
        channel_id: int,
        author_id: int,
        content: str,
        *,
        embeds: list[dict[str, Any]] | None = None,
        message_reference: dict[str, Any] | None = None,
        nonce: str | int | None = None,
        message_type: int = 0,
    ) -> Message:
        """Store a message after Discord's checks (50006 empty, 50035 too long / bad reply)."""
        channel = self.channel(channel_id)
        author = self.member(channel.guild_id, author_id).user
        embeds = embeds or []
        if len(content) > MAX_CONTENT:
            raise ValidationError.field(
                "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
            )
        if not content and not embeds and message_type == 0:
            raise ValidationError(50006, "Cannot send an empty message")
        referenced = None
        if message_reference is not None:
            referenced = self._referenced(channel, message_reference)
            message_reference = {
                "type": 0,
                "message_id": str(referenced.id),
                "channel_id": str(channel.id),
                "guild_id": str(channel.guild_id),
            }
            message_type = REPLY_TYPE
        mentions = self._mentions(channel.guild_id, content)
        if referenced is not None and referenced.author not in mentions:
            mentions.append(referenced.author)
        message = Message(
            id=self.next_id(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
            timestamp=self.now(),
            type=message_type,
            mentions=mentions,
            mention_everyone="@everyone" in content,
            embeds=embeds,
            message_reference=message_reference,
            referenced_message=referenced,
            nonce=nonce,
        )
        channel.messages.append(message)
        return message

    def _referenced(self, channel: Channel, reference: dict[str, Any]) -> Message:
        raw_id = reference.get("message_id")
        try:
            message_id = int(raw_id) if raw_id is not None else -1
        except (TypeError, ValueError):
            message_id = -1
        found = channel.find(message_id)
        if found is None:
            raise ValidationError.field(
                "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
            )
        return found

    def _mentions(self, guild_id: int, content: str) -> list[User]:
        members = self.guild(guild_id).members
        found: list[User] = []
        for match in _MENTION.finditer(content):
            member = members.get(int(match.group(1)))
            if member is not None and member.user not in found:
                found.append(member.user)
        return found

    def add_member(
        self, guild_id: int, account_age_days: float, *, name: str | None = None
    ) -> Member:
        """A new account joins: its id is dated `account_age_days` ago."""
        guild = self.guild(guild_id)
        now_ms = int(self._clock() * 1000)
        created_ms = max(now_ms - int(account_age_days * DAY_MS), DISCORD_EPOCH_MS)
        # Not from the generator: it never goes back in time, and these ids must.
        user_id = _snowflake(created_ms, 2, self._join_counter)
        while user_id in self.users:
            self._join_counter += 1
            user_id = _snowflake(created_ms, 2, self._join_counter)
        self._join_counter += 1
        username = self._unique_name(name)
        user = User(user_id, username, username.replace("_", " ").title())
        self.users[user.id] = user
        member = Member(user, self.now())
        guild.members[user.id] = member
        return member

    def remove_member(self, guild_id: int, user_id: int) -> Member:
        """A kick: the membership ends, the user stays known."""
        member = self.member(guild_id, user_id)
        del self.guild(guild_id).members[user_id]
        return member

    def ban(
        self, guild_id: int, user_id: int, *, reason: str | None, delete_message_seconds: int
    ) -> BanResult:
        """Ban a user (member or not), ending the membership and deleting recent messages."""
        guild = self.guild(guild_id)
        user = self.user(user_id)
        guild.bans[user.id] = Ban(user, reason)
        removed = guild.members.pop(user.id, None)
        deleted: list[Message] = []
        if delete_message_seconds > 0:
            since = self.now() - timedelta(seconds=delete_message_seconds)
            for channel in guild.channels.values():
                doomed = [
                    m for m in channel.messages if m.author.id == user.id and m.timestamp >= since
                ]
                for message in doomed:
                    channel.messages.remove(message)
                deleted.extend(doomed)
        return BanResult(user, removed, deleted)

    def unban(self, guild_id: int, user_id: int) -> User:
        """Lift a ban, else 10026 Unknown Ban."""
        ban = self.guild(guild_id).bans.pop(user_id, None)
        if ban is None:
            raise UnknownEntityError("ban", user_id)
        return ban.user

    def modify_member(self, guild_id: int, user_id: int, changes: dict[str, Any]) -> Member:
        """Apply a member PATCH body: timeout (`communication_disabled_until`) and nick."""
        member = self.member(guild_id, user_id)
        if "communication_disabled_until" in changes:
            member.communication_disabled_until = self._timeout_until(
                changes["communication_disabled_until"]
            )
        if "nick" in changes:
            nick = changes["nick"]
            if nick is not None and (not isinstance(nick, str) or len(nick) > 32):
                raise ValidationError.field(
                    "nick", "BASE_TYPE_BAD_LENGTH", "Must be 1-32 characters."
                )
            member.nick = nick or None
        return member

    def _timeout_until(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValidationError.field(
                "communication_disabled_until",
                "DATE_TIME_TYPE_PARSE",
                "Not a valid ISO8601 timestamp.",
            )
        try:
            until = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError.field(
                "communication_disabled_until",
                "DATE_TIME_TYPE_PARSE",
                "Not a valid ISO8601 timestamp.",
            ) from None
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        if until - self.now() > MAX_TIMEOUT:
            raise ValidationError.field(
                "communication_disabled_until",
                "COMMUNICATION_DISABLED_TIMESTAMP_TOO_FAR",
                "Timeouts can be at most 28 days in the future.",
            )
        return until

    def modify_guild(self, guild_id: int, changes: dict[str, Any]) -> Guild:
        """Apply a guild PATCH body: `verification_level` (0-4) and `name`."""
        guild = self.guild(guild_id)
        if "verification_level" in changes:
            level = changes["verification_level"]
            if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 4:
                raise ValidationError.field(
                    "verification_level",
                    "BASE_TYPE_CHOICES",
                    "Value must be one of (0, 1, 2, 3, 4).",
                )
            guild.verification_level = level
        if "name" in changes:
            name = changes["name"]
            if not isinstance(name, str) or not 2 <= len(name) <= 100:
                raise ValidationError.field(
                    "name", "BASE_TYPE_BAD_LENGTH", "Must be 2-100 characters."
                )
            guild.name = name
        return guild

    def guilds_on_shard(self, shard_id: int, num_shards: int) -> Iterable[Guild]:
        """Guilds whose events go to `[shard_id, num_shards]`."""
        return (g for g in self.guilds.values() if (g.id >> 22) % num_shards == shard_id)
