"""The ping feature as plain async functions: testable with a REST client and no RabbitMQ.

``/ping`` (a slash command) and ``!ping`` (a message) get the same answer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from spectacles.models import (
    AllowedMentions,
    ApplicationCommandOption,
    ApplicationCommandOptionType,
    Interaction,
    Message,
    MessageCreate,
    Snowflake,
)
from spectacles.rest import RestClient
from spectacles.settings import SettingError, SettingsReader, string
from spectacles.worker import CommandContext

__all__ = [
    "PING_OPTIONS",
    "PingConfig",
    "answer_ping",
    "answer_ping_command",
    "is_ping",
    "latency_ms",
    "pong_text",
]

#: ``/ping ephemeral:True`` answers so that only the caller sees it.
PING_OPTIONS: Final = (
    ApplicationCommandOption(
        type=ApplicationCommandOptionType.BOOLEAN,
        name="ephemeral",
        description="Only you see the answer",
    ),
)

DEFAULT_PREFIX: Final = "!"
DEFAULT_COMMAND: Final = "ping"


@dataclass(frozen=True, slots=True)
class PingConfig:
    """Which message content counts as the ping command."""

    command: str = DEFAULT_PREFIX + DEFAULT_COMMAND

    def __post_init__(self) -> None:
        if not self.command.strip():
            raise SettingError("PING_COMMAND", "must not be empty (default: !ping)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PingConfig:
        """``PING_COMMAND`` (whole command) wins; else ``PING_PREFIX`` + ``ping``."""
        env = SettingsReader(os.environ if environ is None else environ)
        prefix = env.var("PING_PREFIX", string(), DEFAULT_PREFIX)
        return cls(command=env.var("PING_COMMAND", string(), prefix + DEFAULT_COMMAND))


def is_ping(message: MessageCreate, config: PingConfig) -> bool:
    """A human's message whose whole content is the command; bots (ourselves too) never count."""
    if message.author.bot or getattr(message, "webhook_id", None) is not None:
        return False
    return message.content.strip() == config.command


def latency_ms(message: MessageCreate, now: datetime | None = None) -> int:
    """Milliseconds from the message's creation (its timestamp) to ``now``; never negative."""
    sent = _sent_at(message)
    now = now or datetime.now(UTC)
    return max(0, round((now - sent).total_seconds() * 1000))


def pong_text(message: MessageCreate, now: datetime | None = None) -> str:
    """The reply, e.g. ``Pong! 42 ms``."""
    return f"Pong! {latency_ms(message, now)} ms"


async def answer_ping(
    message: MessageCreate, rest: RestClient, config: PingConfig, now: datetime | None = None
) -> Message | None:
    """Reply ``Pong! N ms`` to a ping (without pinging its author); ignore everything else."""
    if not is_ping(message, config):
        return None
    return await rest.create_message(
        message.channel_id,
        pong_text(message, now),
        reply_to=message.id,
        allowed_mentions=AllowedMentions(parse=[], replied_user=False),
    )


async def answer_ping_command(
    interaction: Interaction, ctx: CommandContext, now: datetime | None = None
) -> None:
    """Answer ``/ping`` with ``Pong! N ms``, the time since the interaction was created."""
    sent = Snowflake(interaction.id).created_at
    latency = max(0, round(((now or datetime.now(UTC)) - sent).total_seconds() * 1000))
    ephemeral = interaction.option("ephemeral", False) is True
    await ctx.respond(f"Pong! {latency} ms", ephemeral=ephemeral)


def _sent_at(message: MessageCreate) -> datetime:
    stamp: object = message.timestamp
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if isinstance(stamp, str) and stamp:
        try:
            parsed = datetime.fromisoformat(stamp)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    # The id is a snowflake: its creation time is the message's, to the millisecond.
    return Snowflake(message.id).created_at
