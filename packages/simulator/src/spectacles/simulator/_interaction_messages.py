"""Messages an interaction response creates, and Discord's checks on response bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from spectacles.simulator._command_checks import FormErrors
from spectacles.simulator._entities import Message, iso
from spectacles.simulator._errors import ValidationError

__all__ = [
    "EPHEMERAL",
    "LOADING",
    "InteractionMessage",
    "check_message_body",
]

EPHEMERAL: Final = 1 << 6
LOADING: Final = 1 << 7
SUPPRESS_EMBEDS: Final = 1 << 2
SUPPRESS_NOTIFICATIONS: Final = 1 << 12
IS_COMPONENTS_V2: Final = 1 << 15
# Flags an app may set when responding (others are set by Discord).
SETTABLE_FLAGS: Final = EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
CHAT_INPUT_COMMAND_TYPE: Final = 20
CONTEXT_MENU_COMMAND_TYPE: Final = 23
MAX_CONTENT: Final = 2000
MAX_EMBEDS: Final = 10
MAX_ACTION_ROWS: Final = 5


@dataclass(slots=True)
class InteractionMessage(Message):
    """A message sent through an interaction's token: it carries `interaction_metadata`."""

    flags: int = 0
    application_id: int = 0
    interaction_metadata: dict[str, Any] | None = None
    legacy_interaction: dict[str, Any] | None = None
    components: list[dict[str, Any]] = field(default_factory=list)
    edited_timestamp: datetime | None = None

    @property
    def ephemeral(self) -> bool:
        """Only the invoking user sees it (not stored in the channel, no gateway event)."""
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response still showing "… is thinking"."""
        return bool(self.flags & LOADING)

    def to_json(self) -> dict[str, Any]:
        """The message object plus the interaction fields Discord adds."""
        data = Message.to_json(self)
        edited = self.edited_timestamp
        data.update(
            {
                "flags": self.flags,
                "webhook_id": str(self.application_id),
                "application_id": str(self.application_id),
                "components": self.components,
                "edited_timestamp": iso(edited) if edited is not None else None,
                "interaction_metadata": self.interaction_metadata,
            }
        )
        if self.legacy_interaction is not None:
            data["interaction"] = self.legacy_interaction
        return data


def check_message_body(
    body: dict[str, Any], *, prefix: tuple[str, ...] = (), require_content: bool = True
) -> None:
    """Content ≤ 2000, ≤ 10 embeds, ≤ 5 rows, settable flags; 50006 when nothing to show."""
    errors = FormErrors()
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        errors.add((*prefix, "content"), "STRING_TYPE_CONVERT", "Could not interpret as string.")
    elif isinstance(content, str) and len(content) > MAX_CONTENT:
        errors.add((*prefix, "content"), "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    for key, limit in (("embeds", MAX_EMBEDS), ("components", MAX_ACTION_ROWS)):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            errors.add((*prefix, key), "LIST_TYPE_CONVERT", "Only iterables may be used.")
        elif len(value) > limit and not (key == "components" and _components_v2(body)):
            errors.add((*prefix, key), "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer.")
    flags = body.get("flags")
    if flags is not None and (
        not isinstance(flags, int) or isinstance(flags, bool) or flags & ~SETTABLE_FLAGS
    ):
        errors.add((*prefix, "flags"), "MESSAGE_FLAGS_INVALID", "Invalid message flags")
    errors.raise_if_any()
    if require_content and not any(
        body.get(key) for key in ("content", "embeds", "components", "attachments", "poll")
    ):
        raise ValidationError(50006, "Cannot send an empty message")


def _components_v2(body: dict[str, Any]) -> bool:
    flags = body.get("flags")
    return isinstance(flags, int) and bool(flags & IS_COMPONENTS_V2)
