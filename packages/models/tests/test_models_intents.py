import pytest

from spectacles.models import (
    ALL_INTENTS,
    DISPATCH_EVENTS,
    EVENTS_BY_INTENT,
    PRIVILEGED_INTENTS,
    UNGATED_EVENTS,
    Intents,
    UnknownIntentError,
    intents_for_event,
)

# Every row of discord-protocol.md section 6.
DOCUMENTED_VALUES = {
    "GUILDS": 1,
    "GUILD_MEMBERS": 2,
    "GUILD_MODERATION": 4,
    "GUILD_EXPRESSIONS": 8,
    "GUILD_INTEGRATIONS": 16,
    "GUILD_WEBHOOKS": 32,
    "GUILD_INVITES": 64,
    "GUILD_VOICE_STATES": 128,
    "GUILD_PRESENCES": 256,
    "GUILD_MESSAGES": 512,
    "GUILD_MESSAGE_REACTIONS": 1024,
    "GUILD_MESSAGE_TYPING": 2048,
    "DIRECT_MESSAGES": 4096,
    "DIRECT_MESSAGE_REACTIONS": 8192,
    "DIRECT_MESSAGE_TYPING": 16384,
    "MESSAGE_CONTENT": 32768,
    "GUILD_SCHEDULED_EVENTS": 65536,
    "AUTO_MODERATION_CONFIGURATION": 1048576,
    "AUTO_MODERATION_EXECUTION": 2097152,
    "GUILD_MESSAGE_POLLS": 16777216,
    "DIRECT_MESSAGE_POLLS": 33554432,
}


def test_every_documented_intent_has_its_value() -> None:
    assert {m.name: m.value for m in Intents} == DOCUMENTED_VALUES


def test_all_intents_is_every_defined_bit() -> None:
    assert ALL_INTENTS == 53608447


def test_privileged_intents_are_members_presences_and_content() -> None:
    assert PRIVILEGED_INTENTS == (
        Intents.GUILD_MEMBERS | Intents.GUILD_PRESENCES | Intents.MESSAGE_CONTENT
    )
    assert PRIVILEGED_INTENTS == 2 | 256 | 32768


def test_from_names_combines_the_ping_and_raid_bot_intents() -> None:
    names = ["GUILDS", "GUILD_MEMBERS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]
    assert Intents.from_names(names) == 33283
    assert Intents.from_names("GUILDS, guild_members|GUILD_MESSAGES MESSAGE_CONTENT") == 33283


def test_from_names_of_nothing_is_zero() -> None:
    assert Intents.from_names([]) == 0
    assert Intents.from_names("") == 0


def test_from_names_lists_every_unknown_and_every_valid_name() -> None:
    with pytest.raises(UnknownIntentError) as info:
        Intents.from_names(["GUILDS", "GUILD_MESAGES", "PRESENCES"])
    err = info.value
    assert isinstance(err, ValueError)
    assert err.unknown == ("GUILD_MESAGES", "PRESENCES")
    assert set(err.valid) == set(DOCUMENTED_VALUES)
    message = str(err)
    assert "'GUILD_MESAGES'" in message and "'PRESENCES'" in message
    for name in DOCUMENTED_VALUES:
        assert name in message


def test_from_value_rejects_undefined_bits() -> None:
    assert Intents.from_value(33283) == 33283
    with pytest.raises(UnknownIntentError) as info:
        Intents.from_value(33283 | (1 << 17))
    assert info.value.unknown_bits == 1 << 17
    with pytest.raises(UnknownIntentError):
        Intents.from_value(-1)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("MESSAGE_CREATE", Intents.GUILD_MESSAGES | Intents.DIRECT_MESSAGES),
        ("MESSAGE_DELETE_BULK", Intents.GUILD_MESSAGES),
        ("GUILD_CREATE", Intents.GUILDS),
        ("GUILD_UPDATE", Intents.GUILDS),
        ("GUILD_MEMBER_ADD", Intents.GUILD_MEMBERS),
        ("GUILD_MEMBER_REMOVE", Intents.GUILD_MEMBERS),
        ("GUILD_BAN_ADD", Intents.GUILD_MODERATION),
        ("PRESENCE_UPDATE", Intents.GUILD_PRESENCES),
        ("TYPING_START", Intents.GUILD_MESSAGE_TYPING | Intents.DIRECT_MESSAGE_TYPING),
        ("CHANNEL_PINS_UPDATE", Intents.GUILDS | Intents.DIRECT_MESSAGES),
        ("MESSAGE_POLL_VOTE_ADD", Intents.GUILD_MESSAGE_POLLS | Intents.DIRECT_MESSAGE_POLLS),
        ("READY", Intents(0)),
        ("INTERACTION_CREATE", Intents(0)),
        ("NOT_AN_EVENT", Intents(0)),
    ],
)
def test_intents_for_event(event: str, expected: Intents) -> None:
    assert intents_for_event(event) == expected


def test_message_content_gates_no_event() -> None:
    assert EVENTS_BY_INTENT[Intents.MESSAGE_CONTENT] == frozenset()


def test_every_intent_has_an_event_list_and_every_gated_event_is_registered() -> None:
    assert set(EVENTS_BY_INTENT) == set(Intents)
    for events in EVENTS_BY_INTENT.values():
        assert events <= DISPATCH_EVENTS


def test_dispatch_events_registry_has_the_core_events() -> None:
    core = {
        "READY",
        "RESUMED",
        "GUILD_CREATE",
        "GUILD_UPDATE",
        "MESSAGE_CREATE",
        "GUILD_MEMBER_ADD",
        "GUILD_MEMBER_UPDATE",
        "GUILD_MEMBER_REMOVE",
        "GUILD_BAN_ADD",
        "RATE_LIMITED",
    }
    assert core <= DISPATCH_EVENTS
    assert UNGATED_EVENTS <= DISPATCH_EVENTS
    assert all(intents_for_event(e) == 0 for e in UNGATED_EVENTS)
