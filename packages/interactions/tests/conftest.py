"""Fixtures of the ingress tests: a key pair, signed requests, a unique group on real RabbitMQ."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from spectacles.broker.admin import BrokerAdmin
from spectacles.interactions import IngressSettings, InteractionsIngress


class Signer:
    """Signs requests as Discord does: Ed25519 over ``timestamp + body``."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_hex = raw.hex()

    def headers(self, body: bytes, timestamp: float | None = None) -> dict[str, str]:
        stamp = str(int(time.time() if timestamp is None else timestamp))
        signature = self.key.sign(stamp.encode() + body).hex()
        return {
            "X-Signature-Ed25519": signature,
            "X-Signature-Timestamp": stamp,
            "Content-Type": "application/json",
        }


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
async def admin(amqp_url: str) -> AsyncIterator[BrokerAdmin]:
    async with await BrokerAdmin.connect(amqp_url) as admin:
        yield admin


@pytest.fixture
async def group(admin: BrokerAdmin, unique_name: str) -> AsyncIterator[str]:
    """A broker group of the test's own; its exchanges and queues are deleted after."""
    yield unique_name
    await admin.cleanup(
        queues=(f"{unique_name}.observer", f"{unique_name}.ping", f"{unique_name}.ping.dead"),
        exchanges=(
            unique_name,
            f"{unique_name}.dlx",
            f"{unique_name}.commands",
            f"{unique_name}.interactions",
        ),
    )


@pytest.fixture
async def observer(admin: BrokerAdmin, group: str) -> str:
    """A queue bound to INTERACTION_CREATE: what the ingress published, as a worker gets it."""
    queue = f"{group}.observer"
    await admin.declare_exchange(group, "direct")
    await admin.declare_queue(queue, bind=(group, "INTERACTION_CREATE"))
    return queue


@pytest.fixture
async def make_ingress(
    amqp_url: str, group: str, signer: Signer
) -> AsyncIterator[Callable[..., Awaitable[InteractionsIngress]]]:
    stack = contextlib.AsyncExitStack()

    async def start(**overrides: Any) -> InteractionsIngress:
        fields: dict[str, Any] = {
            "public_key": signer.public_hex,
            "address": "127.0.0.1:0",
            "amqp_url": amqp_url,
            "group": group,
        }
        name = overrides.pop("connection_name", None)
        settings = IngressSettings(**{**fields, **overrides})
        return await stack.enter_async_context(InteractionsIngress(settings, connection_name=name))

    async with stack:
        yield start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


RABBITMQCTL = shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))


def close_connections_named(name_prefix: str) -> int:
    """Server-side close (rabbitmqctl) of the connections whose name starts with the prefix."""
    listing = subprocess.run(
        [*RABBITMQCTL, "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    closed = 0
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        if f'{{"connection_name","{name_prefix}' in props:
            subprocess.run(
                [*RABBITMQCTL, "-q", "close_connection", pid.strip(), "test: server-side close"],
                capture_output=True,
                timeout=30,
                check=True,
            )
            closed += 1
    return closed


@pytest.fixture
def kill_connections() -> Callable[[str], int]:
    return close_connections_named
