import pytest

from spectacles.models import (
    COMMAND_OPCODES,
    MAX_PAYLOAD_BYTES,
    RESUMABLE_CLOSE_CODE,
    CloseCode,
    Opcode,
    close_policy,
)

# (code, name, reconnect, resume): every row of discord-protocol.md section 2, plus 1000/1001
# which a server sends to end the session (reconnect, but a new session).
TABLE = [
    (1000, "NORMAL_CLOSURE", True, False),
    (1001, "GOING_AWAY", True, False),
    (4000, "UNKNOWN_ERROR", True, True),
    (4001, "UNKNOWN_OPCODE", True, True),
    (4002, "DECODE_ERROR", True, True),
    (4003, "NOT_AUTHENTICATED", True, True),
    (4004, "AUTHENTICATION_FAILED", False, False),
    (4005, "ALREADY_AUTHENTICATED", True, True),
    (4007, "INVALID_SEQ", True, False),
    (4008, "RATE_LIMITED", True, True),
    (4009, "SESSION_TIMED_OUT", True, False),
    (4010, "INVALID_SHARD", False, False),
    (4011, "SHARDING_REQUIRED", False, False),
    (4012, "INVALID_API_VERSION", False, False),
    (4013, "INVALID_INTENTS", False, False),
    (4014, "DISALLOWED_INTENTS", False, False),
]


@pytest.mark.parametrize(("code", "name", "reconnect", "resume"), TABLE)
def test_close_policy_matches_the_protocol_table(
    code: int, name: str, reconnect: bool, resume: bool
) -> None:
    policy = close_policy(code)
    assert CloseCode(code).name == name
    assert (policy.code, policy.name) == (code, name)
    assert (policy.reconnect, policy.resume) == (reconnect, resume)
    assert policy.fatal is (not reconnect)
    assert policy.cause and policy.fix


def test_close_code_enum_has_exactly_the_documented_codes() -> None:
    assert sorted(int(c) for c in CloseCode) == [row[0] for row in TABLE]


def test_fatal_codes_are_4004_and_4010_to_4014() -> None:
    fatal = {code for code, *_ in TABLE if close_policy(code).fatal}
    assert fatal == {4004, 4010, 4011, 4012, 4013, 4014}


@pytest.mark.parametrize("code", [1006, 1011, 4006, 4015, 4900, 0])
def test_unknown_codes_reconnect_and_resume(code: int) -> None:
    policy = close_policy(code)
    assert (policy.reconnect, policy.resume, policy.fatal) == (True, True, False)
    assert policy.name == "UNKNOWN"
    assert str(code) in policy.cause


def test_fatal_policies_tell_the_operator_what_to_fix() -> None:
    assert "Privileged Gateway Intents" in close_policy(4014).fix
    assert "intents" in close_policy(4014).fix
    assert "token" in close_policy(4004).fix
    assert "shard" in close_policy(4011).fix.lower()
    assert "v=10" in close_policy(4012).fix


def test_resumable_close_code_is_not_one_that_ends_the_session() -> None:
    assert RESUMABLE_CLOSE_CODE == 4900
    assert RESUMABLE_CLOSE_CODE not in (1000, 1001)
    assert close_policy(RESUMABLE_CLOSE_CODE).resume


def test_opcodes_and_command_limits() -> None:
    assert {o.name: o.value for o in Opcode} == {
        "DISPATCH": 0,
        "HEARTBEAT": 1,
        "IDENTIFY": 2,
        "PRESENCE_UPDATE": 3,
        "VOICE_STATE_UPDATE": 4,
        "RESUME": 6,
        "RECONNECT": 7,
        "REQUEST_GUILD_MEMBERS": 8,
        "INVALID_SESSION": 9,
        "HELLO": 10,
        "HEARTBEAT_ACK": 11,
        "REQUEST_SOUNDBOARD_SOUNDS": 31,
    }
    assert frozenset({3, 4, 8, 31}) == COMMAND_OPCODES
    assert MAX_PAYLOAD_BYTES == 4096
