"""Mentions in message text: which users a message mentions, and how Discord's client shows them.

Discord renders `<@id>`/`<@!id>` as `@display name`, `<#id>` as `#channel`, `<@&id>` as `@role`
and `</name:id>` as `/name`; ids that name nothing become `@unknown-user`, `#unknown` and
`@unknown-role`.
"""

from __future__ import annotations

import re
from typing import Final

from spectacles.simulator._entities import Guild, User
from spectacles.simulator._world import World

__all__ = ["mentioned_users", "render_mentions"]

_USER: Final = re.compile(r"<@!?(\d{1,20})>")
_TOKEN: Final = re.compile(r"<(@!?|@&|#)(\d{1,20})>|</([-_'\w ]{1,100}):(\d{1,20})>")


def mentioned_users(world: World, guild_id: int, content: str) -> list[User]:
    """Members mentioned by `<@id>`, in order, each once (as the message's `mentions`)."""
    members = world.guild(guild_id).members
    found: list[User] = []
    for match in _USER.finditer(content):
        member = members.get(int(match.group(1)))
        if member is not None and member.user not in found:
            found.append(member.user)
    return found


def render_mentions(world: World, guild: Guild, content: str) -> str:
    """The text as a Discord client shows it, mentions replaced by names."""

    def replace(match: re.Match[str]) -> str:
        if match.group(3) is not None:
            return "/" + match.group(3)
        kind, target = match.group(1), int(match.group(2))
        if kind == "#":
            channel = world.channels.get(target)
            return "#" + (channel.name if channel is not None else "unknown")
        if kind == "@&":
            role = next((r for r in guild.roles if r.id == target), None)
            return "@" + (role.name if role is not None else "unknown-role")
        member = guild.members.get(target)
        if member is not None:
            return "@" + (member.nick or member.user.global_name or member.user.username)
        user = world.users.get(target)
        return "@" + ((user.global_name or user.username) if user is not None else "unknown-user")

    return _TOKEN.sub(replace, content)
