"""Interactions (slash commands) and application command definitions, as Discord's JSON (v10).

One `Interaction` model serves both ways a bot receives them: the gateway's INTERACTION_CREATE
and the HTTP interactions endpoint send the same object.
"""

from __future__ import annotations

import enum
from typing import Any

from ._base import Model
from ._payloads import Member, Message, User
from ._snowflake import Snowflake

__all__ = [
    "ApplicationCommand",
    "ApplicationCommandData",
    "ApplicationCommandOption",
    "ApplicationCommandOptionChoice",
    "ApplicationCommandOptionType",
    "CommandOption",
    "Interaction",
    "InteractionCallbackType",
    "InteractionType",
    "MessageFlags",
]


class InteractionType(enum.IntEnum):
    """``Interaction.type``."""

    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    APPLICATION_COMMAND_AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class InteractionCallbackType(enum.IntEnum):
    """``type`` of an interaction response (the body of the callback)."""

    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    APPLICATION_COMMAND_AUTOCOMPLETE_RESULT = 8
    MODAL = 9


class MessageFlags(enum.IntFlag):
    """The message flags an interaction response may set."""

    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6


class ApplicationCommandOptionType(enum.IntEnum):
    """``type`` of a command option."""

    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class CommandOption(Model, kw_only=True):
    """An option value the user gave (``data.options``); sub-commands nest ``options``."""

    name: str
    type: int
    value: str | int | float | bool | None = None
    options: list[CommandOption] = []
    focused: bool = False


class ApplicationCommandData(Model, kw_only=True):
    """``Interaction.data`` of a command (type 2) or autocomplete (type 4) interaction.

    Component and modal interactions carry other fields; they decode here with ``name`` empty.
    """

    id: Snowflake | None = None
    name: str = ""
    type: int = 1
    options: list[CommandOption] = []
    resolved: dict[str, Any] | None = None
    guild_id: Snowflake | None = None
    target_id: Snowflake | None = None
    custom_id: str | None = None
    component_type: int | None = None
    values: list[str] = []


class Interaction(Model, kw_only=True):
    """An interaction: the body of INTERACTION_CREATE and of an HTTP interactions request.

    ``token`` authorises the callback and the follow-up webhooks for 15 minutes.
    """

    id: Snowflake
    application_id: Snowflake
    type: int
    data: ApplicationCommandData | None = None
    guild_id: Snowflake | None = None
    channel_id: Snowflake | None = None
    member: Member | None = None
    user: User | None = None
    token: str
    version: int = 1
    message: Message | None = None
    app_permissions: str | None = None
    locale: str | None = None
    guild_locale: str | None = None

    @property
    def author(self) -> User | None:
        """Who invoked it: the member's user in a guild, ``user`` in a DM."""
        if self.member is not None and self.member.user is not None:
            return self.member.user
        return self.user

    def option(self, name: str, default: Any = None) -> Any:
        """The value of the top-level option ``name``, or ``default`` when not given."""
        if self.data is not None:
            for option in self.data.options:
                if option.name == name:
                    return option.value
        return default


class ApplicationCommandOptionChoice(Model, kw_only=True, omit_defaults=True):
    """A fixed choice of a STRING, INTEGER or NUMBER option."""

    name: str
    value: str | int | float


class ApplicationCommandOption(Model, kw_only=True, omit_defaults=True):
    """An option a command declares (what the user may fill in)."""

    type: int
    name: str
    description: str
    required: bool = False
    choices: list[ApplicationCommandOptionChoice] = []
    options: list[ApplicationCommandOption] = []
    channel_types: list[int] = []
    min_value: int | float | None = None
    max_value: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    autocomplete: bool = False


class ApplicationCommand(Model, kw_only=True, omit_defaults=True):
    """A registered command (what ``GET /applications/{id}/commands`` lists).

    ``type``: 1 CHAT_INPUT (slash), 2 USER, 3 MESSAGE.
    """

    id: Snowflake | None = None
    application_id: Snowflake | None = None
    guild_id: Snowflake | None = None
    type: int = 1
    name: str
    description: str = ""
    options: list[ApplicationCommandOption] = []
    default_member_permissions: str | None = None
    nsfw: bool = False
    version: Snowflake | None = None
