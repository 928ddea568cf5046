"""``CommandContext``: what a slash-command handler gets, and the rules of answering once.

Discord accepts exactly one initial answer per interaction (the callback), within 3 s; every
later message is an edit of that answer or a follow-up through the interaction webhook. The
context tracks which of these is next, so ``respond()`` always does the right thing: the
callback when nothing was sent yet, an edit of the original after a defer (the automatic one
too), and a follow-up after a first answer.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Final

from spectacles.models import (
    AllowedMentions,
    Interaction,
    InteractionCallbackType,
    Message,
    MessageFlags,
)
from spectacles.rest import BadRequest
from spectacles.worker._context import Context

__all__ = ["CommandContext"]

#: Discord's "Interaction has already been acknowledged": someone else answered first (the
#: HTTP ingress deferred because the handler was slow, or a previous attempt of this handler).
_ALREADY_ACKNOWLEDGED: Final = 40060


class _State(enum.Enum):
    NEW = "new"
    DEFERRED = "deferred"
    RESPONDED = "responded"


class _Answer:
    """The mutable part of a read-only context: where the interaction's answer stands."""

    __slots__ = ("lock", "state")

    def __init__(self) -> None:
        self.state = _State.NEW
        self.lock = asyncio.Lock()  # the automatic defer and the handler must not both answer


class CommandContext(Context):
    """``Context`` plus the interaction and the ways to answer it.

    ``respond``/``defer``/``followup``/``edit_original`` go through ``rest`` (the REST proxy in a
    deployment); interaction answers are exempt from Discord's global rate limit and our limiter
    does not hold them for it.
    """

    __slots__ = ("_answer", "interaction")

    interaction: Interaction
    """The command's interaction (``interaction.option("name")`` reads an option)."""
    _answer: _Answer

    def __init__(self, base: Context, interaction: Interaction) -> None:
        super().__init__(
            rest=base.rest,
            commands=base.commands,
            worker=base.worker,
            event=base.event,
            log_factory=lambda: base.log,
            headers=base.headers,
            shard_id=base.shard_id,
            message_id=base.message_id,
            attempt=base.attempt,
        )
        object.__setattr__(self, "interaction", interaction)
        object.__setattr__(self, "_answer", _Answer())

    @property
    def acknowledged(self) -> bool:
        """Whether Discord got the initial answer (a response or a defer)."""
        return self._answer.state is not _State.NEW

    @property
    def deferred(self) -> bool:
        """Whether the answer so far is a defer ("thinking..."), waiting for ``respond``."""
        return self._answer.state is _State.DEFERRED

    async def respond(
        self,
        content: str | None = None,
        *,
        ephemeral: bool = False,
        embeds: Sequence[Mapping[str, Any]] | None = None,
        allowed_mentions: AllowedMentions | Mapping[str, Any] | None = None,
    ) -> None:
        """Answer the command: the initial response, or the edit of a deferred one.

        After a defer, ``ephemeral`` cannot change any more (the defer decided it). Calling it
        again after a response sends a follow-up.
        """
        message = _message(content, embeds, allowed_mentions)
        answer = self._answer
        async with answer.lock:
            if answer.state is _State.NEW:
                body = {
                    "type": InteractionCallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
                    "data": _with_flags(message, ephemeral),
                }
                if await self._callback(body):
                    answer.state = _State.RESPONDED
                    return
                answer.state = _State.DEFERRED  # someone deferred for us
            if answer.state is _State.DEFERRED:
                await self.rest.edit_original_response(
                    self.interaction.application_id, self.interaction.token, message
                )
                answer.state = _State.RESPONDED
                return
        await self.followup(
            content, ephemeral=ephemeral, embeds=embeds, allowed_mentions=allowed_mentions
        )

    async def defer(self, *, ephemeral: bool = False) -> None:
        """Show "thinking..." now and answer later with ``respond`` (up to 15 minutes)."""
        answer = self._answer
        async with answer.lock:
            if answer.state is not _State.NEW:
                return
            flags = {"flags": int(MessageFlags.EPHEMERAL)} if ephemeral else {}
            body = {
                "type": InteractionCallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
                "data": flags,
            }
            await self._callback(body)
            answer.state = _State.DEFERRED

    async def followup(
        self,
        content: str | None = None,
        *,
        ephemeral: bool = False,
        embeds: Sequence[Mapping[str, Any]] | None = None,
        allowed_mentions: AllowedMentions | Mapping[str, Any] | None = None,
    ) -> Message:
        """Send one more message for the interaction (after ``respond`` or ``defer``)."""
        if not self.acknowledged:
            raise RuntimeError("followup() needs an answered interaction: respond() or defer()")
        message = _with_flags(_message(content, embeds, allowed_mentions), ephemeral)
        return await self.rest.create_followup_message(
            self.interaction.application_id, self.interaction.token, message
        )

    async def edit_original(
        self,
        content: str | None = None,
        *,
        embeds: Sequence[Mapping[str, Any]] | None = None,
        allowed_mentions: AllowedMentions | Mapping[str, Any] | None = None,
    ) -> Message:
        """Replace the initial answer's content (or fill in a deferred one)."""
        message = _message(content, embeds, allowed_mentions)
        edited = await self.rest.edit_original_response(
            self.interaction.application_id, self.interaction.token, message
        )
        self._answer.state = _State.RESPONDED
        return edited

    async def _callback(self, body: Mapping[str, Any]) -> bool:
        """Send the initial answer; False when it had already been acknowledged by another."""
        try:
            await self.rest.create_interaction_response(
                self.interaction.id, self.interaction.token, body
            )
        except BadRequest as exc:
            if exc.code != _ALREADY_ACKNOWLEDGED:
                raise
            self.log.info("interaction already acknowledged; answering by editing it")
            return False
        return True

    def __repr__(self) -> str:
        data = self.interaction.data
        return (
            f"CommandContext(worker={self.worker!r}, command={data.name if data else None!r}, "
            f"interaction_id={self.interaction.id!r}, state={self._answer.state.value!r})"
        )


def _message(
    content: str | None,
    embeds: Sequence[Mapping[str, Any]] | None,
    allowed_mentions: AllowedMentions | Mapping[str, Any] | None,
) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if content is not None:
        message["content"] = content
    if embeds:
        message["embeds"] = list(embeds)
    if allowed_mentions is not None:
        message["allowed_mentions"] = allowed_mentions
    if not message:
        raise ValueError("an interaction answer needs content or embeds")
    return message


def _with_flags(message: dict[str, Any], ephemeral: bool) -> dict[str, Any]:
    return {**message, "flags": int(MessageFlags.EPHEMERAL)} if ephemeral else message
