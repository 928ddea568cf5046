"""Discord's error answers (from the simulator) become typed exceptions carrying their data."""

from typing import Any

import pytest

from spectacles.rest import (
    BadRequest,
    Forbidden,
    HTTPException,
    InvalidRequestGuard,
    InvalidRequestLimitReached,
    NotFound,
    RestClient,
    Unauthorized,
)

UNKNOWN = 1234567890123


async def ids(sim: Any) -> tuple[int, int, int]:
    guild = (await sim.guilds())[0]
    return (
        int(guild["id"]),
        int(guild["system_channel_id"]),
        int((await sim.guild(guild["id"]))["owner_id"]),
    )


async def test_bad_token_is_unauthorized(make_sim: Any) -> None:
    sim = await make_sim()
    async with RestClient("not-the-token", base_url=sim.api_url) as rest:
        with pytest.raises(Unauthorized) as caught:
            await rest.get_current_user()
    assert caught.value.status == 401
    assert "401" in caught.value.message


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ("channel", 10003),
        ("guild", 10004),
        ("member", 10007),
        ("user", 10013),
    ],
)
async def test_unknown_entities_are_not_found_with_code(
    make_sim: Any, call: str, code: int
) -> None:
    sim = await make_sim()
    guild_id, _, _ = await ids(sim)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        with pytest.raises(NotFound) as caught:
            if call == "channel":
                await rest.get_channel(UNKNOWN)
            elif call == "guild":
                await rest.get_guild(UNKNOWN)
            elif call == "member":
                await rest.kick_member(guild_id, UNKNOWN)
            else:
                await rest.get_user(UNKNOWN)
    assert caught.value.status == 404
    assert caught.value.code == code
    assert caught.value.message


async def test_empty_message_is_50006(make_sim: Any) -> None:
    sim = await make_sim()
    _, channel_id, _ = await ids(sim)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        with pytest.raises(BadRequest) as caught:
            await rest.create_message(channel_id, "")
    assert (caught.value.status, caught.value.code) == (400, 50006)


async def test_too_long_message_is_50035_with_field_errors(make_sim: Any) -> None:
    sim = await make_sim()
    _, channel_id, _ = await ids(sim)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        with pytest.raises(BadRequest) as caught:
            await rest.create_message(channel_id, "x" * 2001)
    error = caught.value
    assert (error.status, error.code) == (400, 50035)
    assert "content" in error.errors
    assert "content:" in str(error)


async def test_missing_permissions_is_forbidden(make_sim: Any) -> None:
    sim = await make_sim()
    guild_id, _, owner_id = await ids(sim)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        with pytest.raises(Forbidden) as caught:
            await rest.kick_member(guild_id, owner_id)
    assert (caught.value.status, caught.value.code) == (403, 50013)
    assert isinstance(caught.value, HTTPException)


async def test_invalid_request_guard_stops_before_sending(make_sim: Any) -> None:
    sim = await make_sim()
    guard = InvalidRequestGuard(threshold=3)
    async with RestClient("bad-token", base_url=sim.api_url, invalid_request_guard=guard) as rest:
        for _ in range(3):
            with pytest.raises(Unauthorized):
                await rest.get_current_user()
        with pytest.raises(InvalidRequestLimitReached) as caught:
            await rest.get_current_user()
    assert caught.value.count == 3 and caught.value.threshold == 3
    assert caught.value.retry_after > 0
    assert (await sim.stats())["rest_requests"] == 3, "the refused request must not be sent"
