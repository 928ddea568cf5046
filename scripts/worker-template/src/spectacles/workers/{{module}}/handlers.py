"""What {{name}} does, as plain functions: test them without RabbitMQ (see tests/).

Replace the example (answer ``!{{name}}``) with your feature. Keep the decisions in pure
functions like ``reply_for`` and the side effects (REST calls) in thin async ones.
"""

from __future__ import annotations

from typing import Final

from spectacles.models import AllowedMentions, Message, MessageCreate
from spectacles.rest import RestClient

__all__ = ["COMMAND", "answer", "reply_for"]

COMMAND: Final = "!{{name}}"


def reply_for(message: MessageCreate) -> str | None:
    """The reply to ``message``, or None to ignore it (bots, ourselves included, are ignored)."""
    if message.author.bot or message.content.strip() != COMMAND:
        return None
    return "Hello from {{name}}!"


async def answer(message: MessageCreate, rest: RestClient) -> Message | None:
    """Reply to ``message`` in its channel when ``reply_for`` has something to say."""
    text = reply_for(message)
    if text is None:
        return None
    return await rest.create_message(
        message.channel_id,
        text,
        reply_to=message.id,
        allowed_mentions=AllowedMentions(replied_user=False),
    )
