import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from spectacles.models import (
    EVENT_MODELS,
    Activity,
    AllowedMentions,
    Channel,
    DecodeError,
    GatewayPayload,
    Guild,
    GuildBanAdd,
    GuildCreate,
    GuildMemberAdd,
    GuildMemberRemove,
    GuildMemberUpdate,
    GuildUpdate,
    Hello,
    Identify,
    IdentifyProperties,
    Interaction,
    Message,
    MessageCreate,
    MessageReference,
    PresenceUpdate,
    Ready,
    Resume,
    Snowflake,
    UnavailableGuild,
    User,
    decode_event,
    decode_model,
    decode_payload,
    encode,
    from_builtins,
    to_builtins,
)

DATA = Path(__file__).parent / "data"


def load(name: str) -> bytes:
    return (DATA / f"{name}.json").read_bytes()


def test_message_create_decodes_every_field_a_bot_reads() -> None:
    msg = decode_event("MESSAGE_CREATE", load("message_create"))
    assert isinstance(msg, MessageCreate) and isinstance(msg, Message)
    assert msg.id == 1240004664516968468 and type(msg.id) is Snowflake
    assert msg.channel_id == 1108812633251381338
    assert msg.guild_id == 1108812632211202048
    assert msg.content.startswith("!ping hello there")
    assert msg.timestamp == datetime(2024, 5, 14, 18, 32, 11, 438000, tzinfo=UTC)
    assert msg.edited_timestamp is None
    assert msg.type == 19
    assert msg.nonce == "1240004663581634560"
    assert msg.author == User(
        id=Snowflake(53908232506183680),
        username="marlin",
        global_name="Marlin",
        avatar="9d5a8cd8e5f4b3a2c1d0e9f8a7b6c5d4",
        public_flags=64,
    )
    assert msg.author.bot is False
    assert msg.member is not None and msg.member.user is None
    assert msg.member.nick == "Marlin"
    assert msg.member.roles == [1108813024672264212, 1108813101017538570]
    assert all(type(r) is Snowflake for r in msg.member.roles)
    assert [u.id for u in msg.mentions] == [80351110224678912]
    assert msg.mention_roles == [1108813024672264212]
    assert msg.message_reference == MessageReference(
        type=0,
        message_id=Snowflake(1240004120003141632),
        channel_id=Snowflake(1108812633251381338),
        guild_id=Snowflake(1108812632211202048),
    )
    assert msg.referenced_message is not None
    assert msg.referenced_message.content == "anyone around?"
    assert msg.referenced_message.guild_id is None


def test_dm_message_has_no_guild_or_member_and_defaults_fill_in() -> None:
    raw = json.dumps(
        {
            "id": "2",
            "channel_id": "3",
            "author": {"id": "4", "username": "u", "bot": True},
            "timestamp": "2024-01-01T00:00:00+00:00",
            "new_field_from_2030": {"nested": [1, {"deep": None}]},
        }
    ).encode()
    msg = decode_event("MESSAGE_CREATE", raw)
    assert msg.guild_id is None and msg.member is None
    assert msg.author.bot is True
    assert (msg.content, msg.mentions, msg.embeds, msg.type, msg.flags) == ("", [], [], 0, 0)


def test_guild_member_add_is_a_member_with_its_guild() -> None:
    member = decode_event("GUILD_MEMBER_ADD", load("guild_member_add"))
    assert isinstance(member, GuildMemberAdd)
    assert member.guild_id == 1108812632211202048
    assert member.user.id == 1240011198735290490
    assert member.user.username == "fresh_account_0412"
    assert member.user.bot is False
    assert member.user.global_name is None
    assert member.joined_at == datetime(2024, 5, 14, 19, 3, 55, 118207, tzinfo=UTC)
    assert member.roles == []
    assert member.pending is True
    assert member.communication_disabled_until is None


def test_guild_member_update_carries_the_timeout() -> None:
    member = decode_event("GUILD_MEMBER_UPDATE", load("guild_member_update"))
    assert isinstance(member, GuildMemberUpdate)
    assert member.communication_disabled_until == datetime(2024, 5, 14, 20, 3, 55, tzinfo=UTC)
    assert member.nick == "spammer?"
    assert member.flags == 2


def test_guild_member_remove_and_ban_add() -> None:
    removed = decode_event("GUILD_MEMBER_REMOVE", load("guild_member_remove"))
    banned = decode_event("GUILD_BAN_ADD", load("guild_ban_add"))
    assert isinstance(removed, GuildMemberRemove) and isinstance(banned, GuildBanAdd)
    for event in (removed, banned):
        assert event.guild_id == 1108812632211202048
        assert event.user.id == 1240011198735290490


def test_ready_ignores_trace_and_undocumented_keys() -> None:
    ready = decode_event("READY", load("ready"))
    assert isinstance(ready, Ready)
    assert ready.v == 10
    assert ready.user.bot is True and ready.user.username == "spectacles-bot"
    assert ready.session_id == "9f4c1e0b8a7d6c5b4a39281706f5e4d3"
    assert ready.resume_gateway_url == "wss://gateway-us-east1-b.discord.gg"
    assert ready.guilds == [
        UnavailableGuild(id=Snowflake(1108812632211202048)),
        UnavailableGuild(id=Snowflake(81384788765712384)),
    ]
    assert ready.shard == (0, 2)
    assert ready.application is not None
    assert (ready.application.id, ready.application.flags) == (1108810000000000000, 565248)


def test_guild_create_decodes_roles_members_and_channels() -> None:
    guild = decode_event("GUILD_CREATE", load("guild_create"))
    assert isinstance(guild, GuildCreate) and isinstance(guild, Guild)
    assert guild.owner_id == 53908232506183680
    assert guild.verification_level == 1
    assert guild.system_channel_id == 1108812633251381338
    assert guild.member_count == 2
    assert [r.name for r in guild.roles] == ["@everyone", "Moderators"]
    assert guild.roles[1].permissions == "1099511627775"
    assert [m.user.username for m in guild.members if m.user] == ["marlin", "spectacles-bot"]
    assert guild.members[1].user is not None and guild.members[1].user.bot
    assert guild.channels == [
        Channel(
            id=Snowflake(1108812633251381338),
            type=0,
            name="general",
            position=0,
            last_message_id=Snowflake(1240004664516968468),
            permission_overwrites=[
                {"id": "1108812632211202048", "type": 0, "allow": "0", "deny": "2048"}
            ],
        )
    ]
    assert guild.joined_at == datetime(2023, 5, 19, 8, 10, tzinfo=UTC)


def test_guild_create_during_an_outage_gives_an_unavailable_guild() -> None:
    guild = decode_event("GUILD_CREATE", b'{"id": "81384788765712384", "unavailable": true}')
    assert guild == UnavailableGuild(id=Snowflake(81384788765712384), unavailable=True)


def test_guild_create_missing_required_fields_is_still_an_error() -> None:
    with pytest.raises(DecodeError, match="GUILD_CREATE"):
        decode_event("GUILD_CREATE", b'{"id": "81384788765712384", "unavailable": false}')


def test_guild_update_carries_the_new_verification_level() -> None:
    guild = decode_event("GUILD_UPDATE", load("guild_update"))
    assert isinstance(guild, GuildUpdate)
    assert guild.verification_level == 3
    assert guild.members == [] and guild.member_count is None


def test_event_models_registry() -> None:
    assert {
        "READY": Ready,
        "GUILD_CREATE": GuildCreate,
        "GUILD_UPDATE": GuildUpdate,
        "MESSAGE_CREATE": MessageCreate,
        "GUILD_MEMBER_ADD": GuildMemberAdd,
        "GUILD_MEMBER_UPDATE": GuildMemberUpdate,
        "GUILD_MEMBER_REMOVE": GuildMemberRemove,
        "GUILD_BAN_ADD": GuildBanAdd,
        "INTERACTION_CREATE": Interaction,
    } == EVENT_MODELS


def test_events_without_a_model_decode_to_a_plain_dict() -> None:
    raw = b'{"guild_id": "1", "user_id": "2", "emoji": {"id": null, "name": "x"}, "_trace": []}'
    event = decode_event("MESSAGE_REACTION_ADD", raw)
    assert event == {
        "guild_id": "1",
        "user_id": "2",
        "emoji": {"id": None, "name": "x"},
        "_trace": [],
    }
    assert decode_event("SOMETHING_NEW", "{}") == {}


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("MESSAGE_CREATE", b'{"id": "1", "channel_id": '),
        ("MESSAGE_CREATE", b"\xff\xfe not json"),
        ("MESSAGE_CREATE", b'{"id": "1"}'),
        ("MESSAGE_CREATE", b"[]"),
        ("GUILD_MEMBER_ADD", b'{"guild_id": "nope", "user": {"id": "1", "username": "u"}}'),
        ("READY", b""),
        ("RESUMED", b"[1, 2]"),
        ("RESUMED", b"{"),
    ],
)
def test_malformed_bytes_raise_decode_error(name: str, raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event(name, raw)
    assert isinstance(info.value, ValueError)
    assert info.value.target == name
    assert info.value.reason


def test_decode_error_names_the_bad_field() -> None:
    raw = b'{"guild_id": "1", "user": {"id": "x", "username": "u"}}'
    with pytest.raises(DecodeError, match=r"\$\.user\.id"):
        decode_event("GUILD_MEMBER_ADD", raw)


def test_gateway_payload_keeps_d_as_the_exact_raw_bytes() -> None:
    d = b'{"heartbeat_interval": 41250, "_trace": ["x"]}'
    payload = decode_payload(b'{"t": null, "s": null, "op": 10, "d": ' + d + b"}")
    assert (payload.op, payload.s, payload.t) == (10, None, None)
    assert bytes(payload.d) == d
    assert decode_model(Hello, payload.d) == Hello(heartbeat_interval=41250)


def test_gateway_payload_dispatch_and_null_or_missing_d() -> None:
    dispatch = decode_payload('{"op": 0, "s": 42, "t": "MESSAGE_CREATE", "d": {"a": 1}}')
    assert (dispatch.op, dispatch.s, dispatch.t) == (0, 42, "MESSAGE_CREATE")
    assert bytes(decode_payload(b'{"op": 11}').d) == b"null"
    assert bytes(decode_payload(b'{"op": 7, "d": null}').d) == b"null"
    assert decode_payload(b'{"op": 9, "d": false}').d == msgspec.Raw(b"false")


@pytest.mark.parametrize("seq", [b"-1", b"9223372036854775808", b"1e30", b'"7"'])
def test_gateway_payload_refuses_a_seq_no_relay_could_carry(seq: bytes) -> None:
    with pytest.raises(DecodeError, match=r"\$\.s"):
        decode_payload(b'{"op": 0, "t": "X", "d": {}, "s": ' + seq + b"}")


def test_malformed_gateway_payload_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_payload(b'{"d": 1}')
    with pytest.raises(DecodeError):
        decode_payload(b"not json")


def test_encode_gateway_payload_with_raw_d() -> None:
    heartbeat = encode(GatewayPayload(op=1, d=msgspec.Raw(b"251")))
    assert json.loads(heartbeat) == {"op": 1, "d": 251, "s": None, "t": None}
    assert json.loads(encode(GatewayPayload(op=1)))["d"] is None


@pytest.mark.parametrize(
    "name",
    ["message_create", "guild_member_add", "guild_member_update", "ready", "guild_create"],
)
def test_encode_round_trips_and_writes_snowflakes_as_strings(name: str) -> None:
    event_name = name.upper()
    model = decode_event(event_name, load(name))
    encoded = encode(model)
    assert decode_event(event_name, encoded) == model
    original = json.loads(load(name))
    again = json.loads(encoded)
    # Every snowflake we keep goes back out as the same string Discord sent.
    for key in ("id", "guild_id", "channel_id", "session_id"):
        if key in original:
            assert again[key] == original[key]
            assert isinstance(again[key], str)


def test_encode_message_nested_snowflakes_are_strings() -> None:
    msg = decode_event("MESSAGE_CREATE", load("message_create"))
    out = json.loads(encode(msg))
    assert out["author"]["id"] == "53908232506183680"
    assert out["member"]["roles"] == ["1108813024672264212", "1108813101017538570"]
    assert out["mention_roles"] == ["1108813024672264212"]


def test_identify_encodes_only_what_was_set_and_hides_the_token_in_repr() -> None:
    identify = Identify(
        token="secret-token",
        intents=33283,
        shard=(1, 4),
        properties=IdentifyProperties(os="linux"),
    )
    assert json.loads(encode(identify)) == {
        "token": "secret-token",
        "properties": {"os": "linux", "browser": "spectacles", "device": "spectacles"},
        "intents": 33283,
        "shard": [1, 4],
    }
    assert "secret-token" not in repr(identify)
    full = Identify(
        token="t",
        intents=1,
        compress=True,
        large_threshold=250,
        presence=PresenceUpdate(status="idle", activities=[Activity(name="moderating", type=3)]),
    )
    assert json.loads(encode(full))["presence"] == {
        "since": None,
        "activities": [{"name": "moderating", "type": 3}],
        "status": "idle",
        "afk": False,
    }
    assert decode_model(Identify, encode(full)) == full


def test_resume_round_trips_and_hides_the_token_in_repr() -> None:
    resume = Resume(token="secret-token", session_id="abc", seq=17)
    assert json.loads(encode(resume)) == {"token": "secret-token", "session_id": "abc", "seq": 17}
    assert "secret-token" not in repr(resume)
    assert decode_model(Resume, encode(resume)) == resume


def test_allowed_mentions_and_reference_for_a_reply() -> None:
    mentions = AllowedMentions(users=[Snowflake(5)], replied_user=True)
    assert to_builtins(mentions) == {
        "parse": [],
        "roles": [],
        "users": ["5"],
        "replied_user": True,
    }
    reference = MessageReference(message_id=Snowflake(10), fail_if_not_exists=False)
    assert to_builtins(reference) == {"message_id": "10", "fail_if_not_exists": False}


def test_from_builtins_accepts_int_or_string_snowflakes() -> None:
    data: dict[str, Any] = {"id": 7, "username": "u"}
    assert from_builtins(User, data) == from_builtins(User, {"id": "7", "username": "u"})
    assert type(from_builtins(User, data).id) is Snowflake
    with pytest.raises(DecodeError, match="User"):
        from_builtins(User, {"id": "seven", "username": "u"})


def test_decode_model_works_for_lists_and_rejects_bad_input() -> None:
    users = decode_model(list[User], b'[{"id": "1", "username": "a"}, {"id": 2, "username": "b"}]')
    assert [u.id for u in users] == [1, 2]
    with pytest.raises(DecodeError):
        decode_model(User, b'{"id": "1"}')
