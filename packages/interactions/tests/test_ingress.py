"""The ingress on a real RabbitMQ: signatures, PING, and the gateway's wire format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from spectacles.broker.admin import BrokerAdmin
from spectacles.interactions import ConfigError, IngressSettings

GUILD_ID = "1180000000000000004"
INTERACTION = {
    "id": "1180000000000000001",
    "application_id": "1180000000000000002",
    "type": 2,
    "data": {"id": "1180000000000000003", "name": "ping", "type": 1},
    "guild_id": GUILD_ID,
    "channel_id": "1180000000000000005",
    "member": {"user": {"id": "1180000000000000006", "username": "alice"}, "roles": []},
    "token": "interaction-token",
    "version": 1,
}


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()


async def published(admin: BrokerAdmin, queue: str) -> int:
    """Messages in the observer queue now (the ingress publishes with confirms, so any
    publish made before its HTTP answer is already counted)."""
    depth = await admin.depth(queue)
    assert depth is not None, f"queue {queue!r} is gone"
    return depth


async def test_bad_signature_is_401_and_nothing_is_published(
    make_ingress: Any,
    signer: Any,
    http: aiohttp.ClientSession,
    observer: str,
    admin: BrokerAdmin,
) -> None:
    ingress = await make_ingress()
    body = body_of(INTERACTION)
    headers = signer.headers(body)
    tampered = body.replace(b"ping", b"pong")
    assert (await post(http, ingress.url, tampered, headers))[0] == 401
    other = type(signer)()  # a key that is not the application's
    assert (await post(http, ingress.url, body, other.headers(body)))[0] == 401
    unsigned = {"Content-Type": "application/json"}
    assert (await post(http, ingress.url, body, unsigned))[0] == 401
    garbage = {**headers, "X-Signature-Ed25519": "zz"}
    assert (await post(http, ingress.url, body, garbage))[0] == 401
    assert await published(admin, observer) == 0


async def test_replayed_old_timestamp_is_refused(
    make_ingress: Any,
    signer: Any,
    http: aiohttp.ClientSession,
    observer: str,
    admin: BrokerAdmin,
) -> None:
    ingress = await make_ingress(max_age=300.0)
    body = body_of(INTERACTION)
    # Correctly signed, but captured ten minutes ago: a replay.
    status, _ = await post(http, ingress.url, body, signer.headers(body, time.time() - 600))
    assert status == 401
    assert await published(admin, observer) == 0


async def test_ping_is_answered_with_pong_and_not_published(
    make_ingress: Any,
    signer: Any,
    http: aiohttp.ClientSession,
    observer: str,
    admin: BrokerAdmin,
) -> None:
    ingress = await make_ingress()
    body = body_of({"id": "1", "application_id": "2", "type": 1, "token": "t", "version": 1})
    assert await post(http, ingress.url, body, signer.headers(body)) == (200, {"type": 1})
    assert await published(admin, observer) == 0


async def test_interaction_is_published_in_the_gateways_wire_format_then_deferred(
    make_ingress: Any,
    signer: Any,
    http: aiohttp.ClientSession,
    observer: str,
    admin: BrokerAdmin,
) -> None:
    ingress = await make_ingress(response_timeout=0.5, shard_count=4)
    body = body_of(INTERACTION)
    before = time.time()
    started = time.monotonic()
    status, answer = await post(http, ingress.url, body, signer.headers(body))
    # Nobody answered within the response timeout: Discord gets a deferred answer in time.
    assert (status, answer) == (200, {"type": 5})
    assert time.monotonic() - started < 3.0
    message = await admin.get(observer)  # published (and confirmed) before the HTTP answer
    assert message is not None
    assert message.body == body  # byte for byte, as the gateway relays `d`
    assert message.routing_key == "INTERACTION_CREATE"
    assert message.type == "INTERACTION_CREATE"
    assert message.content_type == "application/json"
    assert message.persistent
    shard_id = (int(GUILD_ID) >> 22) % 4
    seq = int(INTERACTION["id"])
    assert message.message_id == f"{shard_id}:http:{seq}"
    assert message.headers == {"shard_id": shard_id, "seq": seq, "guild_id": GUILD_ID}
    assert message.timestamp is not None
    assert before - 1 <= message.timestamp.timestamp() <= time.time() + 1


def test_settings_name_the_bad_key() -> None:
    with pytest.raises(ConfigError, match="DISCORD_PUBLIC_KEY"):
        IngressSettings.from_env({})
    with pytest.raises(ConfigError, match="DISCORD_PUBLIC_KEY"):
        IngressSettings.from_env({"DISCORD_PUBLIC_KEY": "abc"})
    key = "11" * 32
    with pytest.raises(ConfigError, match="INTERACTIONS_RESPONSE_TIMEOUT"):
        IngressSettings.from_env({"DISCORD_PUBLIC_KEY": key, "INTERACTIONS_RESPONSE_TIMEOUT": "5"})
    with pytest.raises(ConfigError, match="INTERACTIONS_MAX_AGE"):
        IngressSettings.from_env({"DISCORD_PUBLIC_KEY": key, "INTERACTIONS_MAX_AGE": "x"})


def test_entry_point_exits_2_naming_the_key() -> None:
    script = Path(sys.executable).parent / "spectacles-interactions"
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_PUBLIC_KEY"}
    env["INTERACTIONS_MAX_AGE"] = "soon"
    done = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "DISCORD_PUBLIC_KEY" in done.stderr
    env["DISCORD_PUBLIC_KEY"] = "11" * 32
    done = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "INTERACTIONS_MAX_AGE" in done.stderr
