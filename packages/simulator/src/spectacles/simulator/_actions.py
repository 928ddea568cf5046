"""World changes together with the gateway dispatches Discord sends for them.

REST routes (the bot acting) and the control API (users acting) both call these, so an action
always fires the same events wherever it came from.
"""

from __future__ import annotations

from typing import Any, Final

from spectacles.simulator._config import SimulatorConfig
from spectacles.simulator._entities import TEXT_CHANNEL, Guild, Member, Message, iso
from spectacles.simulator._gateway import GatewayHub
from spectacles.simulator._world import USER_JOIN_TYPE, World

__all__ = ["Actions"]

MAX_DELETE_SECONDS: Final = 604_800


class Actions:
    """The verbs of the simulated Discord."""

    def __init__(self, config: SimulatorConfig, world: World, hub: GatewayHub) -> None:
        self.config = config
        self.world = world
        self.hub = hub

    def message_event(self, message: Message) -> dict[str, Any]:
        """MESSAGE_CREATE data: the message plus `guild_id` and the author's partial member."""
        data = message.to_json()
        data["guild_id"] = str(message.guild_id)
        data["channel_type"] = TEXT_CHANNEL
        member = self.world.guilds[message.guild_id].members.get(message.author.id)
        if member is not None:
            data["member"] = member.to_json(with_user=False)
        return data

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
        """Post a message and fire MESSAGE_CREATE."""
        message = self.world.post_message(
            channel_id,
            author_id,
            content,
            embeds=embeds,
            message_reference=message_reference,
            nonce=nonce,
            message_type=message_type,
        )
        bot_id = self.world.bot.id
        exempt = message.author.id == bot_id or message.mentions_user(bot_id)
        self.hub.dispatch(
            "MESSAGE_CREATE", self.message_event(message), message.guild_id, content_exempt=exempt
        )
        return message

    def join(self, guild_id: int, account_age_days: float, *, name: str | None = None) -> Member:
        """A new account joins: GUILD_MEMBER_ADD, plus Discord's join message (system channel)."""
        member = self.world.add_member(guild_id, account_age_days, name=name)
        data = member.to_json()
        data["guild_id"] = str(guild_id)
        self.hub.dispatch("GUILD_MEMBER_ADD", data, guild_id)
        if self.config.system_join_messages:
            guild = self.world.guild(guild_id)
            self.post_message(
                guild.system_channel_id, member.user.id, "", message_type=USER_JOIN_TYPE
            )
        return member

    def modify_member(self, guild_id: int, user_id: int, changes: dict[str, Any]) -> Member:
        """Timeout / nick change: GUILD_MEMBER_UPDATE."""
        member = self.world.modify_member(guild_id, user_id, changes)
        data = member.to_json()
        data["guild_id"] = str(guild_id)
        self.hub.dispatch("GUILD_MEMBER_UPDATE", data, guild_id)
        return member

    def kick(self, guild_id: int, user_id: int) -> Member:
        """Kick: GUILD_MEMBER_REMOVE."""
        member = self.world.remove_member(guild_id, user_id)
        self._member_removed(guild_id, member)
        return member

    def _member_removed(self, guild_id: int, member: Member) -> None:
        data = {"guild_id": str(guild_id), "user": member.user.to_json()}
        self.hub.dispatch("GUILD_MEMBER_REMOVE", data, guild_id)

    def ban(
        self, guild_id: int, user_id: int, *, reason: str | None, delete_message_seconds: int
    ) -> None:
        """Ban: GUILD_BAN_ADD, GUILD_MEMBER_REMOVE for a member, MESSAGE_DELETE per deleted one."""
        result = self.world.ban(
            guild_id, user_id, reason=reason, delete_message_seconds=delete_message_seconds
        )
        data = {"guild_id": str(guild_id), "user": result.user.to_json()}
        self.hub.dispatch("GUILD_BAN_ADD", data, guild_id)
        if result.removed is not None:
            self._member_removed(guild_id, result.removed)
        for message in result.deleted:
            deleted = {
                "id": str(message.id),
                "channel_id": str(message.channel_id),
                "guild_id": str(guild_id),
            }
            self.hub.dispatch("MESSAGE_DELETE", deleted, guild_id)

    def unban(self, guild_id: int, user_id: int) -> None:
        """Unban: GUILD_BAN_REMOVE."""
        user = self.world.unban(guild_id, user_id)
        data = {"guild_id": str(guild_id), "user": user.to_json()}
        self.hub.dispatch("GUILD_BAN_REMOVE", data, guild_id)

    def modify_guild(self, guild_id: int, changes: dict[str, Any]) -> Guild:
        """Guild settings: GUILD_UPDATE."""
        guild = self.world.modify_guild(guild_id, changes)
        self.hub.dispatch("GUILD_UPDATE", guild.to_json(), guild_id)
        return guild

    def guild_summary(self, guild: Guild) -> dict[str, Any]:
        """The control API's short view of a guild."""
        return {
            "id": str(guild.id),
            "name": guild.name,
            "shard": self.world.shard_of(guild.id, self.config.shards),
            "verification_level": guild.verification_level,
            "system_channel_id": str(guild.system_channel_id),
            "mod_log_channel_id": str(guild.mod_log_channel_id),
            "member_count": len(guild.members),
            "channels": [
                {"id": str(c.id), "name": c.name, "type": 0} for c in guild.channels.values()
            ],
        }

    def guild_detail(self, guild: Guild) -> dict[str, Any]:
        """The control API's full view: members with account ages, bans, timeouts."""
        now = self.world.now()
        members = []
        for member in guild.members.values():
            user = member.user
            until = member.communication_disabled_until
            members.append(
                {
                    "id": str(user.id),
                    "username": user.username,
                    "bot": user.bot,
                    "account_created_at": iso(user.created_at),
                    "account_age_days": round((now - user.created_at).total_seconds() / 86400, 3),
                    "joined_at": iso(member.joined_at),
                    "nick": member.nick,
                    "communication_disabled_until": iso(until) if until is not None else None,
                }
            )
        summary = self.guild_summary(guild)
        summary.update(
            {
                "owner_id": str(guild.owner_id),
                "members": members,
                "bans": [
                    {"user_id": str(uid), "username": b.user.username, "reason": b.reason}
                    for uid, b in guild.bans.items()
                ],
                "timeouts": [
                    {"user_id": str(m.user.id), "until": iso(m.communication_disabled_until)}
                    for m in guild.members.values()
                    if m.communication_disabled_until is not None and m.timed_out(now)
                ],
            }
        )
        return summary
