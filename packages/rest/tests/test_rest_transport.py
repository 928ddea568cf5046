"""Headers, retries and 429 handling against a tiny local HTTP upstream.

The simulator never fails with a 5xx or drops a connection mid-request, so these cases use a
real aiohttp server written for the occasion.
"""

import json
import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from spectacles.models import AllowedMentions, Snowflake
from spectacles.rest import (
    USER_AGENT,
    RestClient,
    RestConnectionError,
    ServerError,
)


def client(url: str, **options: object) -> RestClient:
    return RestClient("secret-token", base_url=url, backoff_base=0.01, backoff_max=0.05, **options)  # type: ignore[arg-type]


async def test_sends_discord_headers_and_encoded_audit_reason(upstream: Any) -> None:
    async with client(upstream.url) as rest:
        await rest.create_message(10, "hi")
        upstream.script.append(upstream.status(204))
        await rest.kick_member(5, 6, reason="raid: joined 2 mins ago ✓")
    (_, path, headers, body, _), (method, kick_path, kick_headers, _, _) = upstream.requests
    assert path == "/api/v10/channels/10/messages"
    assert headers["Authorization"] == "Bot secret-token"
    assert headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("DiscordBot (https://github.com/spectacles-py, ")
    assert headers["Content-Type"] == "application/json"
    assert body == b'{"content":"hi"}'
    assert (method, kick_path) == ("DELETE", "/api/v10/guilds/5/members/6")
    assert kick_headers["X-Audit-Log-Reason"] == "raid%3A%20joined%202%20mins%20ago%20%E2%9C%93"


async def test_base_url_from_environment(upstream: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_API_URL", upstream.url + "/")
    async with RestClient("secret-token") as rest:
        assert rest.http.base_url == upstream.url
        await rest.create_message(10, "hi")
    assert len(upstream.requests) == 1


def test_bad_base_url_and_token_are_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_API_URL", "discord.com/api")
    with pytest.raises(ValueError, match="DISCORD_API_URL"):
        RestClient("t")
    with pytest.raises(ValueError, match="DISCORD_TOKEN"):
        RestClient(" ", base_url="http://x")


async def test_timeout_body_is_iso_datetime(upstream: Any) -> None:
    upstream.script.append(
        upstream.status(200, {"user": {"id": "6", "username": "u"}, "roles": []})
    )
    until = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with client(upstream.url) as rest:
        member = await rest.timeout_member(5, 6, until)
        with pytest.raises(ValueError, match="timezone-aware"):
            await rest.timeout_member(5, 6, datetime(2030, 1, 1))
    assert member.user is not None and member.user.id == 6
    assert (
        upstream.requests[0][3] == b'{"communication_disabled_until":"2030-01-02T03:04:05+00:00"}'
    )


async def test_5xx_is_retried_with_backoff_then_succeeds(upstream: Any) -> None:
    upstream.script += [upstream.status(502), upstream.status(503)]
    async with client(upstream.url) as rest:
        message = await rest.create_message(10, "hi")
    assert message.id == 1000
    assert len(upstream.requests) == 3


async def test_5xx_gives_up_after_max_retries(upstream: Any) -> None:
    upstream.script += [upstream.status(500, {"message": "boom", "code": 0})] * 5
    async with client(upstream.url, max_retries=2) as rest:
        with pytest.raises(ServerError) as caught:
            await rest.get_channel(10)
    assert caught.value.status == 500 and caught.value.message == "boom"
    assert len(upstream.requests) == 3


async def test_connection_refused_is_retried_then_typed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    async with client(f"http://127.0.0.1:{port}/api/v10", max_retries=2) as rest:
        with pytest.raises(RestConnectionError) as caught:
            await rest.get_channel(10)
    assert caught.value.attempts == 3


async def test_dropped_post_is_not_repeated_but_get_is(upstream: Any) -> None:
    upstream.script += [upstream.drop]
    async with client(upstream.url, max_retries=2) as rest:
        with pytest.raises(RestConnectionError) as caught:
            await rest.create_message(10, "only once")
        assert caught.value.attempts == 1
        assert len(upstream.requests) == 1
        upstream.script += [upstream.drop]
        upstream.script.append(upstream.status(200, {"id": "10", "type": 0}))
        channel = await rest.get_channel(10)
    assert channel.id == 10
    assert len(upstream.requests) == 3


async def test_global_429_waits_retry_after_and_retries(upstream: Any) -> None:
    upstream.script.append(
        upstream.status(
            429,
            {"message": "You are being rate limited.", "retry_after": 0.3, "global": True},
            **{"Retry-After": "1", "X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"},
        )
    )
    async with client(upstream.url) as rest:
        message = await rest.create_message(10, "hi")
    assert message.id == 1000
    first, second = upstream.requests[0][4], upstream.requests[1][4]
    assert second - first >= 0.3


async def test_reply_and_allowed_mentions_are_encoded_as_discord_expects(upstream: Any) -> None:
    mentions = AllowedMentions(parse=["users"], users=[Snowflake(42)], replied_user=True)
    async with client(upstream.url) as rest:
        await rest.create_message(10, "hi", reply_to=99, allowed_mentions=mentions)
    body = json.loads(upstream.requests[0][3])
    assert body == {
        "content": "hi",
        "allowed_mentions": {
            "parse": ["users"],
            "roles": [],
            "users": ["42"],
            "replied_user": True,
        },
        "message_reference": {"message_id": "99", "channel_id": "10"},
    }
