"""The REST proxy's own credential (REST_PROXY_AUTH), body limit, and secret-free settings.

Against a real proxy with the simulator as Discord: nobody on the network may act as the bot, nor
spend the invalid-request budget every worker shares.
"""

import hmac
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from spectacles.rest import RestClient
from spectacles.rest.proxy import ProxySettings, RestProxy

SECRET = "proxy-auth-Zq81"
HEADER = "X-Spectacles-Proxy-Auth"


@asynccontextmanager
async def running_proxy(upstream_url: str, **settings: Any) -> AsyncIterator[RestProxy]:
    proxy = RestProxy(ProxySettings(address="127.0.0.1:0", upstream=upstream_url, **settings))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.mark.parametrize("injects_token", [True, False], ids=["inject", "pass-through"])
async def test_anonymous_requests_get_401_from_the_proxy_and_leave_the_guard_alone(
    make_sim: Any, injects_token: bool
) -> None:
    sim = await make_sim()
    token = {"token": sim.token} if injects_token else {}
    # A stranger in pass-through mode sends some (wrong) token; Discord would count its 401s.
    stranger = {} if injects_token else {"Authorization": "Bot not-the-bots-token"}
    async with (
        running_proxy(sim.api_url, auth=SECRET, invalid_request_threshold=5, **token) as proxy,
        aiohttp.ClientSession() as session,
    ):
        statuses = []
        for _ in range(20):
            async with session.get(f"{proxy.url}/api/v10/users/@me", headers=stranger) as response:
                statuses.append(response.status)
                assert response.headers["X-Spectacles-Proxy-Error"] == "1"
        assert statuses == [401] * 20
        assert proxy.invalid_request_guard.count == 0
        assert (await sim.stats())["rest_requests"] == 0  # nothing reached "Discord"
        # The legitimate client still works: the guard was never switched off.
        client_token = None if injects_token else sim.token
        async with RestClient(
            client_token, base_url=f"{proxy.url}/api/v10", proxy_auth=SECRET
        ) as rest:
            me = await rest.get_current_user()
        assert me.bot
        assert proxy.invalid_request_guard.count == 0


async def test_wrong_credential_is_refused_and_the_right_one_accepted(make_sim: Any) -> None:
    sim = await make_sim()
    async with (
        running_proxy(sim.api_url, token=sim.token, auth=SECRET) as proxy,
        aiohttp.ClientSession() as session,
    ):
        url = f"{proxy.url}/api/v10/users/@me"
        for wrong in ("", "proxy-auth-Zq8", SECRET + "x", SECRET.upper()):
            async with session.get(url, headers={HEADER: wrong}) as response:
                assert response.status == 401, wrong
                assert HEADER in (await response.json())["message"]
        async with session.get(url, headers={HEADER: SECRET}) as response:
            assert response.status == 200
            assert (await response.json())["bot"] is True
    log = await sim.rest_log()
    assert len(log) == 1  # only the authenticated request was forwarded
    assert all(HEADER.lower() not in {k.lower() for k in entry.get("headers", {})} for entry in log)


async def test_the_credential_is_compared_in_constant_time(
    upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with (
        running_proxy(upstream.url, token="bot-token-x", auth=SECRET) as proxy,
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/api/v10/users/@me", headers={HEADER: "guess"}) as response,
    ):
        assert response.status == 401
    assert (b"guess", SECRET.encode()) in compared
    assert upstream.requests == []


async def test_the_credential_never_goes_upstream(upstream: Any) -> None:
    async with (
        running_proxy(upstream.url, auth=SECRET) as proxy,
        RestClient("client-token", base_url=f"{proxy.url}/api/v10", proxy_auth=SECRET) as rest,
    ):
        await rest.create_message(1, "hi")
    headers = {k.lower(): v for k, v in upstream.requests[0][2].items()}
    assert headers["authorization"] == "Bot client-token"
    assert HEADER.lower() not in headers


async def test_oversize_bodies_get_413_before_anything_is_forwarded(upstream: Any) -> None:
    async with (
        running_proxy(upstream.url, auth=SECRET, max_body_bytes=1024) as proxy,
        aiohttp.ClientSession(headers={HEADER: SECRET, "Authorization": "Bot t"}) as session,
    ):
        url = f"{proxy.url}/api/v10/channels/1/messages"
        async with session.post(url, data=b"x" * 1024) as response:
            assert response.status == 200  # at the limit: fine
        async with session.post(url, data=b"x" * 1025) as response:
            assert response.status == 413
            assert "REST_PROXY_MAX_BODY_BYTES=1024" in (await response.json())["message"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
            for _ in range(64):
                yield b"y" * 1024

        async with session.post(url, data=chunks()) as response:
            assert response.status == 413
    assert len(upstream.requests) == 1


def test_default_body_limit_is_discords_upload_limit() -> None:
    assert ProxySettings().max_body_bytes == 25 * 1024 * 1024
    assert ProxySettings.from_env({"REST_PROXY_MAX_BODY_BYTES": "10"}).max_body_bytes == 10
    with pytest.raises(ValueError, match="REST_PROXY_MAX_BODY_BYTES"):
        ProxySettings.from_env({"REST_PROXY_MAX_BODY_BYTES": "0"})


def test_injecting_a_token_needs_a_credential_or_an_explicit_opt_out() -> None:
    with pytest.raises(ValueError, match="REST_PROXY_AUTH: is not set"):
        ProxySettings.from_env({"DISCORD_TOKEN": "tok"})
    with pytest.raises(ValueError, match="REST_PROXY_ALLOW_ANONYMOUS"):
        ProxySettings.from_env({"DISCORD_TOKEN": "tok", "REST_PROXY_ALLOW_ANONYMOUS": "maybe"})
    opted_out = ProxySettings.from_env({"DISCORD_TOKEN": "tok", "REST_PROXY_ALLOW_ANONYMOUS": "1"})
    assert opted_out.allow_anonymous and opted_out.auth is None
    assert ProxySettings.from_env({"DISCORD_TOKEN": "tok", "REST_PROXY_AUTH": "s"}).auth == "s"
    assert ProxySettings.from_env({}).auth is None  # pass-through without a credential: allowed


def test_entry_point_refuses_to_inject_a_token_without_a_credential() -> None:
    env = {**os.environ, "DISCORD_TOKEN": "entry-token-Qw7", "LOG_FORMAT": "json"}
    env.pop("REST_PROXY_AUTH", None)
    env.pop("REST_PROXY_ALLOW_ANONYMOUS", None)
    result = subprocess.run(
        [sys.executable, "-m", "spectacles.rest.proxy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "REST_PROXY_AUTH" in result.stderr
    assert "entry-token-Qw7" not in result.stderr + result.stdout


def test_settings_repr_shows_no_secret() -> None:
    settings = ProxySettings(token="tok-en-SECRET-1", auth="auth-SECRET-2")
    assert "SECRET" not in repr(settings) and "SECRET" not in str(settings)


async def test_client_sends_the_credential_from_the_environment(
    upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REST_PROXY_AUTH", SECRET)
    async with (
        running_proxy(upstream.url, token="bot-token-y", auth=SECRET) as proxy,
        RestClient(None, base_url=f"{proxy.url}/api/v10") as rest,
    ):
        await rest.create_message(1, "hi")
    assert upstream.requests[0][2]["Authorization"] == "Bot bot-token-y"
    # Discord itself never gets the proxy's secret.
    discord = RestClient("t", base_url="https://discord.com/api/v10")
    assert HEADER not in discord.http._headers
    await discord.close()


async def test_client_guard_does_not_count_the_proxys_own_refusals(upstream: Any) -> None:
    async with (
        running_proxy(upstream.url, token="bot-token-z", auth=SECRET) as proxy,
        RestClient(None, base_url=f"{proxy.url}/api/v10", proxy_auth="wrong") as rest,
    ):
        for _ in range(3):
            with pytest.raises(Exception, match="401"):
                await rest.get_current_user()
        assert rest.http.invalid_request_guard.count == 0
    assert upstream.requests == []
