"""Gateway intents, the dispatch events each one gates, and the registry of event names."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntFlag
from functools import reduce
from operator import or_
from typing import Final

__all__ = [
    "ALL_INTENTS",
    "DISPATCH_EVENTS",
    "EVENTS_BY_INTENT",
    "PRIVILEGED_INTENTS",
    "UNGATED_EVENTS",
    "Intents",
    "UnknownIntentError",
    "intents_for_event",
]


class UnknownIntentError(ValueError):
    """Raised for intent names (or bits) that Discord does not define."""

    def __init__(self, unknown: Iterable[str], *, unknown_bits: int = 0) -> None:
        self.unknown: tuple[str, ...] = tuple(unknown)
        self.unknown_bits = unknown_bits
        self.valid: tuple[str, ...] = tuple(m.name for m in Intents if m.name is not None)
        what = ", ".join(repr(n) for n in self.unknown) or f"bits {unknown_bits:#x}"
        super().__init__(f"unknown intent(s): {what}; valid names: {', '.join(self.valid)}")


class Intents(IntFlag):
    """Gateway intents (discord-protocol.md section 6)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MODERATION = 1 << 2
    GUILD_EXPRESSIONS = 1 << 3
    GUILD_INTEGRATIONS = 1 << 4
    GUILD_WEBHOOKS = 1 << 5
    GUILD_INVITES = 1 << 6
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15
    GUILD_SCHEDULED_EVENTS = 1 << 16
    AUTO_MODERATION_CONFIGURATION = 1 << 20
    AUTO_MODERATION_EXECUTION = 1 << 21
    GUILD_MESSAGE_POLLS = 1 << 24
    DIRECT_MESSAGE_POLLS = 1 << 25

    @classmethod
    def from_names(cls, names: str | Iterable[str]) -> Intents:
        """Combine intent names: ``["GUILDS", "GUILD_MESSAGES"]`` or ``"GUILDS,GUILD_MESSAGES"``.

        Names are case-insensitive; a string may separate them with commas, ``|`` or spaces.
        Raises `UnknownIntentError` listing every unknown name and all valid ones.
        """
        if isinstance(names, str):
            names = names.replace("|", ",").replace(" ", ",").split(",")
        value = cls(0)
        unknown: list[str] = []
        for raw in names:
            name = raw.strip().upper()
            if not name:
                continue
            member = cls.__members__.get(name)
            if member is None:
                unknown.append(raw.strip())
            else:
                value |= member
        if unknown:
            raise UnknownIntentError(unknown)
        return value

    @classmethod
    def from_value(cls, value: int) -> Intents:
        """Validate a raw bitfield: undefined bits raise `UnknownIntentError` (Discord: 4013)."""
        extra = value & ~int(ALL_INTENTS)
        if value < 0 or extra:
            raise UnknownIntentError((), unknown_bits=extra if value >= 0 else value)
        return cls(value)


ALL_INTENTS: Final[Intents] = reduce(or_, Intents, Intents(0))

# Intents Discord only grants when enabled for the bot in the Developer Portal (else close 4014).
PRIVILEGED_INTENTS: Final[Intents] = (
    Intents.GUILD_MEMBERS | Intents.GUILD_PRESENCES | Intents.MESSAGE_CONTENT
)

_MESSAGE_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE")
_REACTION_EVENTS = (
    "MESSAGE_REACTION_ADD",
    "MESSAGE_REACTION_REMOVE",
    "MESSAGE_REACTION_REMOVE_ALL",
    "MESSAGE_REACTION_REMOVE_EMOJI",
)
_POLL_EVENTS = ("MESSAGE_POLL_VOTE_ADD", "MESSAGE_POLL_VOTE_REMOVE")

EVENTS_BY_INTENT: Final[dict[Intents, frozenset[str]]] = {
    Intents.GUILDS: frozenset(
        {
            "GUILD_CREATE",
            "GUILD_UPDATE",
            "GUILD_DELETE",
            "GUILD_ROLE_CREATE",
            "GUILD_ROLE_UPDATE",
            "GUILD_ROLE_DELETE",
            "CHANNEL_CREATE",
            "CHANNEL_UPDATE",
            "CHANNEL_DELETE",
            "CHANNEL_PINS_UPDATE",
            "THREAD_CREATE",
            "THREAD_UPDATE",
            "THREAD_DELETE",
            "THREAD_LIST_SYNC",
            "THREAD_MEMBER_UPDATE",
            "THREAD_MEMBERS_UPDATE",
            "STAGE_INSTANCE_CREATE",
            "STAGE_INSTANCE_UPDATE",
            "STAGE_INSTANCE_DELETE",
        }
    ),
    Intents.GUILD_MEMBERS: frozenset(
        {"GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE", "THREAD_MEMBERS_UPDATE"}
    ),
    Intents.GUILD_MODERATION: frozenset(
        {"GUILD_AUDIT_LOG_ENTRY_CREATE", "GUILD_BAN_ADD", "GUILD_BAN_REMOVE"}
    ),
    Intents.GUILD_EXPRESSIONS: frozenset(
        {
            "GUILD_EMOJIS_UPDATE",
            "GUILD_STICKERS_UPDATE",
            "GUILD_SOUNDBOARD_SOUND_CREATE",
            "GUILD_SOUNDBOARD_SOUND_UPDATE",
            "GUILD_SOUNDBOARD_SOUND_DELETE",
            "GUILD_SOUNDBOARD_SOUNDS_UPDATE",
        }
    ),
    Intents.GUILD_INTEGRATIONS: frozenset(
        {
            "GUILD_INTEGRATIONS_UPDATE",
            "INTEGRATION_CREATE",
            "INTEGRATION_UPDATE",
            "INTEGRATION_DELETE",
        }
    ),
    Intents.GUILD_WEBHOOKS: frozenset({"WEBHOOKS_UPDATE"}),
    Intents.GUILD_INVITES: frozenset({"INVITE_CREATE", "INVITE_DELETE"}),
    Intents.GUILD_VOICE_STATES: frozenset({"VOICE_STATE_UPDATE", "VOICE_CHANNEL_EFFECT_SEND"}),
    Intents.GUILD_PRESENCES: frozenset({"PRESENCE_UPDATE"}),
    Intents.GUILD_MESSAGES: frozenset({*_MESSAGE_EVENTS, "MESSAGE_DELETE_BULK"}),
    Intents.GUILD_MESSAGE_REACTIONS: frozenset(_REACTION_EVENTS),
    Intents.GUILD_MESSAGE_TYPING: frozenset({"TYPING_START"}),
    Intents.DIRECT_MESSAGES: frozenset({*_MESSAGE_EVENTS, "CHANNEL_PINS_UPDATE"}),
    Intents.DIRECT_MESSAGE_REACTIONS: frozenset(_REACTION_EVENTS),
    Intents.DIRECT_MESSAGE_TYPING: frozenset({"TYPING_START"}),
    # MESSAGE_CONTENT gates no event: it fills `content`, `embeds`, `attachments`, `components`.
    Intents.MESSAGE_CONTENT: frozenset(),
    Intents.GUILD_SCHEDULED_EVENTS: frozenset(
        {
            "GUILD_SCHEDULED_EVENT_CREATE",
            "GUILD_SCHEDULED_EVENT_UPDATE",
            "GUILD_SCHEDULED_EVENT_DELETE",
            "GUILD_SCHEDULED_EVENT_USER_ADD",
            "GUILD_SCHEDULED_EVENT_USER_REMOVE",
        }
    ),
    Intents.AUTO_MODERATION_CONFIGURATION: frozenset(
        {
            "AUTO_MODERATION_RULE_CREATE",
            "AUTO_MODERATION_RULE_UPDATE",
            "AUTO_MODERATION_RULE_DELETE",
        }
    ),
    Intents.AUTO_MODERATION_EXECUTION: frozenset({"AUTO_MODERATION_ACTION_EXECUTION"}),
    Intents.GUILD_MESSAGE_POLLS: frozenset(_POLL_EVENTS),
    Intents.DIRECT_MESSAGE_POLLS: frozenset(_POLL_EVENTS),
}

# Dispatch events every session receives whatever its intents.
UNGATED_EVENTS: Final[frozenset[str]] = frozenset(
    {
        "READY",
        "RESUMED",
        "RATE_LIMITED",
        "USER_UPDATE",
        "VOICE_SERVER_UPDATE",
        "GUILD_MEMBERS_CHUNK",
        "SOUNDBOARD_SOUNDS",
        "INTERACTION_CREATE",
        "APPLICATION_COMMAND_PERMISSIONS_UPDATE",
        "ENTITLEMENT_CREATE",
        "ENTITLEMENT_UPDATE",
        "ENTITLEMENT_DELETE",
        "SUBSCRIPTION_CREATE",
        "SUBSCRIPTION_UPDATE",
        "SUBSCRIPTION_DELETE",
    }
)

# Every dispatch event name the gateway knows; config validation checks event names against it.
DISPATCH_EVENTS: Final[frozenset[str]] = UNGATED_EVENTS.union(*EVENTS_BY_INTENT.values())

_INTENTS_BY_EVENT: Final[dict[str, Intents]] = {}
for _intent, _events in EVENTS_BY_INTENT.items():
    for _event in _events:
        _INTENTS_BY_EVENT[_event] = _INTENTS_BY_EVENT.get(_event, Intents(0)) | _intent


def intents_for_event(event: str) -> Intents:
    """Return the intents any one of which delivers `event`; empty means it is not gated.

    Names outside `DISPATCH_EVENTS` also give an empty value (Discord adds events over time);
    check membership in `DISPATCH_EVENTS` to reject typos.
    """
    return _INTENTS_BY_EVENT.get(event, Intents(0))
