"""What the live view shows in a channel, as Discord's client would show it to the invoking user.

Channel messages (mentions rendered as names, "X used /ping" above interaction responses) are
merged with what only the invoking user sees: "Sending command…" while an interaction waits,
ephemeral responses, and "The application did not respond" when it failed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from spectacles.simulator._entities import Guild, Message, iso
from spectacles.simulator._interaction_messages import InteractionMessage
from spectacles.simulator._interactions import MODAL, Interaction, Interactions
from spectacles.simulator._mentions import render_mentions
from spectacles.simulator._world import World

__all__ = ["channel_view"]

JOIN_TYPE = 7


def _display_name(guild: Guild, world: World, user_id: int) -> str:
    member = guild.members.get(user_id)
    if member is not None:
        return member.nick or member.user.global_name or member.user.username
    user = world.users.get(user_id)
    return (user.global_name or user.username) if user is not None else "unknown-user"


def _used(interaction: Interaction, guild: Guild, world: World) -> dict[str, str] | None:
    command = interaction.command
    if command is None:  # a component click: Discord shows no "used" line
        return None
    return {
        "user": _display_name(guild, world, interaction.user_id),
        "command": "/" + command.name,
    }


def _message_item(
    message: Message, guild: Guild, world: World, used: dict[str, str] | None
) -> dict[str, Any]:
    extra = message if isinstance(message, InteractionMessage) else None
    return {
        "id": str(message.id),
        "at": iso(message.timestamp),
        "kind": "ephemeral" if extra is not None and extra.ephemeral else "message",
        "author": _display_name(guild, world, message.author.id),
        "bot": message.author.bot,
        "system": message.type == JOIN_TYPE,
        "text": render_mentions(world, guild, message.content),
        "embeds": [
            {
                "title": render_mentions(world, guild, str(e.get("title") or "")),
                "description": render_mentions(world, guild, str(e.get("description") or "")),
            }
            for e in message.embeds
        ],
        "used": used,
        "ephemeral": extra is not None and extra.ephemeral,
        "loading": extra is not None and extra.loading,
        "edited": extra is not None and extra.edited_timestamp is not None,
    }


def _note(
    interaction: Interaction, at: float, kind: str, text: str, guild: Guild, world: World
) -> dict[str, Any]:
    return {
        "id": f"{interaction.id}-{kind}",
        "at": iso(datetime.fromtimestamp(at, tz=world.now().tzinfo)),
        "kind": kind,
        "author": world.bot.global_name or world.bot.username,
        "bot": True,
        "system": False,
        "text": text,
        "embeds": [],
        "used": _used(interaction, guild, world),
        "ephemeral": True,
        "loading": False,
        "edited": False,
    }


def channel_view(
    world: World, interactions: Interactions, channel_id: int, limit: int
) -> list[dict[str, Any]]:
    """The newest `limit` items of the channel, oldest first."""
    channel = world.channel(channel_id)
    guild = world.guild(channel.guild_id)
    by_interaction = {i.id: i for i in interactions.by_id.values() if i.channel_id == channel_id}
    items: list[tuple[float, dict[str, Any]]] = []
    for message in list(channel.messages)[-limit:]:
        used = None
        if isinstance(message, InteractionMessage) and message.interaction_metadata:
            origin = by_interaction.get(int(message.interaction_metadata["id"]))
            if origin is not None:
                used = _used(origin, guild, world)
        items.append((message.timestamp.timestamp(), _message_item(message, guild, world, used)))
    for interaction in by_interaction.values():
        interactions.state(interaction)  # apply the response deadline first
        used = _used(interaction, guild, world)
        if interaction.failure is not None and interaction.failed_at is not None:
            note = _note(
                interaction, interaction.failed_at, "failed", interaction.failure, guild, world
            )
            items.append((interaction.failed_at, note))
        elif interaction.response_type is None:
            pending = _note(
                interaction, interaction.created_at, "pending", "Sending command…", guild, world
            )
            items.append((interaction.created_at, pending))
        elif interaction.response_type == MODAL and interaction.responded_at is not None:
            title = (interaction.response_data or {}).get("title", "")
            text = f"opened the form “{title}”"
            items.append(
                (
                    interaction.responded_at,
                    _note(interaction, interaction.responded_at, "ephemeral", text, guild, world),
                )
            )
        hidden = [interaction.original, *interaction.followups]
        for sent in hidden:
            if isinstance(sent, InteractionMessage) and sent.ephemeral:
                if sent is interaction.original and interaction.original_deleted:
                    continue
                item = _message_item(sent, guild, world, used)
                items.append((sent.timestamp.timestamp(), item))
    items.sort(key=lambda pair: pair[0])
    return [item for _, item in items[-limit:]]
