"""The REST proxy: forwarding, token injection, shared limits, and its entry point."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from spectacles.observability import redact
from spectacles.rest import RestClient, Unauthorized
from spectacles.rest.proxy import ProxySettings, RestProxy, TooManyTokens, token_key


@asynccontextmanager
async def running_proxy(upstream_url: str, **settings: Any) -> AsyncIterator[RestProxy]:
    proxy = RestProxy(ProxySettings(address="127.0.0.1:0", upstream=upstream_url, **settings))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_forwards_request_and_returns_answer_unchanged(upstream: Any) -> None:
    limit_headers = {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "4",
        "X-RateLimit-Reset": "1900000000.000",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": "abcd",
        "X-Custom": "kept",
    }
    upstream.script.append(upstream.status(418, {"message": "teapot", "code": 7}, **limit_headers))
    async with (
        running_proxy(upstream.url) as proxy,
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy.url}/api/v10/channels/1/messages?x=1&y=%20",
            data=b'{"content":"hi"}',
            headers={"Authorization": "Bot client-token", "Content-Type": "application/json"},
        ) as response,
    ):
        body = await response.json()
        assert response.status == 418
        assert body == {"message": "teapot", "code": 7}
        for name, value in limit_headers.items():
            assert response.headers[name] == value
    method, path, headers, sent, _ = upstream.requests[0]
    assert (method, path, sent) == (
        "POST",
        "/api/v10/channels/1/messages?x=1&y=%20",
        b'{"content":"hi"}',
    )
    assert headers["Authorization"] == "Bot client-token"


async def test_forwards_percent_encoded_paths_byte_for_byte(upstream: Any) -> None:
    path = "/api/v10/channels/1/messages/2/reactions/%F0%9F%91%8D/@me"
    async with (
        running_proxy(upstream.url) as proxy,
        aiohttp.ClientSession() as session,
        session.put(f"{proxy.url}{path}", headers={"Authorization": "Bot t"}) as response,
    ):
        assert response.status == 200
    assert upstream.requests[0][:2] == ("PUT", path)


async def test_injects_token_when_the_client_sends_none(upstream: Any) -> None:
    async with running_proxy(upstream.url, token="proxy-token", auth="shared-9Kx") as proxy:
        async with RestClient(
            None, base_url=f"{proxy.url}/api/v10", proxy_auth="shared-9Kx"
        ) as rest:
            await rest.create_message(1, "a")
        async with RestClient(
            "proxy-token", base_url=f"{proxy.url}/api/v10", proxy_auth="shared-9Kx"
        ) as rest:
            await rest.create_message(1, "b")
        tokens = len(proxy._limiters)
    assert [r[2]["Authorization"] for r in upstream.requests] == ["Bot proxy-token"] * 2
    assert all("X-Spectacles-Proxy-Auth" not in r[2] for r in upstream.requests)
    assert tokens == 1  # with or without the header, one token, one limiter


async def test_with_discord_token_set_other_tokens_get_discords_401(upstream: Any) -> None:
    other = "someone-elses-token-7Hq2"
    async with (
        running_proxy(upstream.url, token="proxy-token", allow_anonymous=True) as proxy,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(
            f"{proxy.url}/api/v10/users/@me", headers={"Authorization": f"Bot {other}"}
        ) as response:
            assert response.status == 401
            assert await response.json() == {"message": "401: Unauthorized", "code": 0}
        async with RestClient("client-side-token", base_url=f"{proxy.url}/api/v10") as rest:
            with pytest.raises(Unauthorized):
                await rest.get_current_user()
        tokens = len(proxy._limiters)
    assert upstream.requests == []  # refused by the proxy, never forwarded
    assert tokens == 0
    assert redact(other) == other  # a refused token is not made a log secret


async def test_without_discord_token_distinct_tokens_are_capped(upstream: Any) -> None:
    accepted = ["capped-token-one-9xQ", "capped-token-two-9xQ"]
    refused = "capped-token-three-9xQ"
    async with (
        running_proxy(upstream.url, max_tokens=2) as proxy,
        aiohttp.ClientSession() as session,
    ):
        for token in [*accepted, None]:  # no header at all is not a token
            headers = {"Authorization": f"Bot {token}"} if token else {}
            async with session.get(f"{proxy.url}/api/v10/channels/1", headers=headers) as response:
                assert response.status == 200
        async with session.get(
            f"{proxy.url}/api/v10/channels/1", headers={"Authorization": f"Bot {refused}"}
        ) as response:
            assert response.status == 503
            assert response.headers["X-Spectacles-Proxy-Error"] == "1"
            assert "REST_PROXY_MAX_TOKENS=2" in (await response.json())["message"]
        async with session.get(
            f"{proxy.url}/api/v10/channels/1", headers={"Authorization": f"Bot {accepted[0]}"}
        ) as response:
            assert response.status == 200  # known tokens keep working
        async with session.get(f"{proxy.url}/readyz") as response:
            assert (await response.json())["tokens"] == 3  # two tokens and the anonymous one
    sent = [r[2].get("Authorization") for r in upstream.requests]
    assert sent == [f"Bot {accepted[0]}", f"Bot {accepted[1]}", None, f"Bot {accepted[0]}"]
    assert redact(refused) == refused
    assert all(redact(token) == "[REDACTED]" for token in accepted)


def test_limiter_for_a_token_beyond_the_cap_raises_too_many_tokens() -> None:
    proxy = RestProxy(ProxySettings(address="127.0.0.1:0", max_tokens=1))
    proxy.limiter_for("Bot first-token-abc")
    proxy.limiter_for(None)
    with pytest.raises(TooManyTokens) as info:
        proxy.limiter_for("Bot second-token-abc")
    assert info.value.limit == 1


async def test_upstream_429_is_retried_inside_the_proxy(upstream: Any) -> None:
    upstream.script.append(
        upstream.status(
            429,
            {"message": "You are being rate limited.", "retry_after": 0.2, "global": False},
            **{"Retry-After": "1", "X-RateLimit-Scope": "user"},
        )
    )
    async with (
        running_proxy(upstream.url) as proxy,
        RestClient("t", base_url=f"{proxy.url}/api/v10") as rest,
    ):
        message = await rest.create_message(1, "hi")
    assert message.id == 1000
    assert len(upstream.requests) == 2
    assert upstream.requests[1][4] - upstream.requests[0][4] >= 0.2


async def test_unreachable_upstream_is_a_502() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with (
        running_proxy(f"http://127.0.0.1:{port}/api/v10") as proxy,
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/api/v10/users/@me") as response,
    ):
        assert response.status == 502
        assert "unreachable" in (await response.json())["message"]


def test_token_key_is_short_and_not_the_token() -> None:
    key = token_key("Bot super-secret")
    assert len(key) == 16 and "secret" not in key
    assert token_key(None) == "anonymous"
    assert token_key("Bot a") != token_key("Bot b")


def test_settings_from_env_validate_and_name_the_key() -> None:
    settings = ProxySettings.from_env(
        {
            "REST_PROXY_ADDRESS": "127.0.0.1:9000",
            "DISCORD_API_URL": "http://sim:8080/api/v10/",
            "DISCORD_TOKEN": "Bot abc",
            "REST_PROXY_AUTH": "shared",
            "REST_PROXY_GLOBAL_LIMIT": "10",
        }
    )
    assert settings.address == "127.0.0.1:9000"
    assert settings.upstream == "http://sim:8080/api/v10"
    assert settings.token == "abc"
    assert settings.global_limit == 10
    assert ProxySettings.from_env({}).address == "127.0.0.1:8081"  # loopback unless told
    with pytest.raises(ValueError, match="REST_PROXY_GLOBAL_LIMIT"):
        ProxySettings.from_env({"REST_PROXY_GLOBAL_LIMIT": "many"})
    with pytest.raises(ValueError, match="host:port"):
        ProxySettings.from_env({"REST_PROXY_ADDRESS": "nowhere"})
    for bad in ("nan", "inf"):
        with pytest.raises(ValueError, match="REST_PROXY_TIMEOUT: expected a finite number"):
            ProxySettings.from_env({"REST_PROXY_TIMEOUT": bad})
    assert ProxySettings.from_env({}).max_tokens == 8
    assert ProxySettings.from_env({"REST_PROXY_MAX_TOKENS": "3"}).max_tokens == 3
    with pytest.raises(ValueError, match="REST_PROXY_MAX_TOKENS"):
        ProxySettings.from_env({"REST_PROXY_MAX_TOKENS": "0"})


def test_entry_point_rejects_bad_config_clearly() -> None:
    env = {**os.environ, "REST_PROXY_ADDRESS": "nowhere", "LOG_FORMAT": "json"}
    result = subprocess.run(
        [sys.executable, "-m", "spectacles.rest.proxy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "REST_PROXY_ADDRESS" in result.stderr or "host:port" in result.stderr


def test_entry_point_when_log_level_bad_exits_2_naming_it() -> None:
    env = {**os.environ, "LOG_LEVEL": "loud"}
    result = subprocess.run(
        [sys.executable, "-m", "spectacles.rest.proxy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "LOG_LEVEL" in result.stderr
    assert "Traceback" not in result.stderr


async def test_entry_point_serves_health_and_stops_on_sigterm(upstream: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "REST_PROXY_ADDRESS": f"127.0.0.1:{port}",
        "DISCORD_API_URL": upstream.url,
        "DISCORD_TOKEN": "entry-point-secret",
        "REST_PROXY_AUTH": "entry-point-proxy-secret",
        "LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "spectacles.rest.proxy",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the proxy never answered /healthz")
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200
            async with session.get(
                f"http://127.0.0.1:{port}/api/v10/channels/1",
                headers={"X-Spectacles-Proxy-Auth": "entry-point-proxy-secret"},
            ) as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert "spectacles_rest_proxy_requests_total" in await response.text()
        assert upstream.requests[0][2]["Authorization"] == "Bot entry-point-secret"
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0, err.decode()
        assert b"entry-point-secret" not in out + err
        assert b"entry-point-proxy-secret" not in out + err
        assert b"rest_proxy.started" in out + err
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


HAMMER = Path(__file__).with_name("rest_hammer_script.py")


async def hammer(
    api_url: str, channel_id: int, per_process: int, token: str | None, proxy_auth: str = ""
) -> None:
    """Three processes post ``per_process`` messages each to one channel, concurrently."""
    env = {**os.environ, "LOG_LEVEL": "WARNING", "REST_PROXY_AUTH": proxy_auth}
    if token is not None:
        env["HAMMER_TOKEN"] = token
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(HAMMER),
            api_url,
            str(channel_id),
            f"proc{n}",
            str(per_process),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(3)
    ]
    try:
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in processes)), 45)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()
        assert len(json.loads(out.decode().strip().splitlines()[-1])) == per_process


async def assert_all_posted_once(sim: Any, channel_id: int, per_process: int) -> None:
    stored = Counter(m["content"] for m in await sim.messages(channel_id))
    expected = [f"proc{n}-{i}" for n in range(3) for i in range(per_process)]
    assert {c: stored[c] for c in expected} == dict.fromkeys(expected, 1)


async def test_three_processes_through_the_proxy_never_see_a_429(make_sim: Any) -> None:
    sim = await make_sim(route_limits={"POST /channels/{channel_id}/messages": (4, 0.5)})
    channel_id = int((await sim.guilds())[0]["system_channel_id"])
    async with running_proxy(sim.api_url, token=sim.token, auth="hammer-auth") as proxy:
        await hammer(f"{proxy.url}/api/v10", channel_id, 8, token=None, proxy_auth="hammer-auth")
    stats = await sim.stats()
    assert stats["rate_limited"] == 0, "the simulator answered a 429 the proxy should have avoided"
    await assert_all_posted_once(sim, channel_id, 8)


async def test_three_processes_without_the_proxy_do_get_429s(make_sim: Any) -> None:
    # The control experiment: per-process limiters cannot see each other's spending.
    sim = await make_sim(route_limits={"POST /channels/{channel_id}/messages": (4, 0.5)})
    channel_id = int((await sim.guilds())[0]["system_channel_id"])
    await hammer(sim.api_url, channel_id, 8, token=sim.token)
    assert (await sim.stats())["rate_limited"] > 0
    await assert_all_posted_once(sim, channel_id, 8)


async def test_proxy_guard_refuses_before_discord_would_ban(make_sim: Any) -> None:
    sim = await make_sim()
    async with (
        running_proxy(sim.api_url, invalid_request_threshold=2) as proxy,
        aiohttp.ClientSession(headers={"Authorization": "Bot wrong"}) as session,
    ):
        statuses = []
        for _ in range(3):
            async with session.get(f"{proxy.url}/api/v10/users/@me") as response:
                statuses.append(response.status)
                retry_after = response.headers.get("Retry-After")
        assert statuses == [401, 401, 503]
        assert retry_after is not None and float(retry_after) > 0
    assert (await sim.stats())["rest_requests"] == 2


def test_each_token_gets_its_own_limiter() -> None:
    proxy = RestProxy(ProxySettings(address="127.0.0.1:0"))
    assert proxy.limiter_for("Bot a") is proxy.limiter_for("Bot a")
    assert proxy.limiter_for("Bot a") is not proxy.limiter_for("Bot b")


def test_entry_point_bad_setting_exits_2_with_one_line() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "REST_PROXY_TIMEOUT": "nan"}
    done = subprocess.run(
        [sys.executable, "-m", "spectacles.rest.proxy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "spectacles-rest-proxy: configuration error: "
        "REST_PROXY_TIMEOUT: expected a finite number, got 'nan'\n"
    )
