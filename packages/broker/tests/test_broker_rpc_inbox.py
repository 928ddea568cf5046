"""RpcInbox against a real RabbitMQ: requests reach the process holding the key, and only then."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from spectacles.broker.broker import Broker
from spectacles.broker.errors import (
    BrokerUnavailable,
    PublishReturned,
    RpcError,
    TopologyMismatch,
)
from spectacles.broker.rpc import RpcClient
from spectacles.broker.rpc_inbox import RpcInbox, declare_inbox_exchange

from .conftest import close_connections_named, eventually


def echo(tag: bytes) -> Callable[[str, bytes, Mapping[str, Any]], Any]:
    async def handler(key: str, body: bytes, headers: Mapping[str, Any]) -> bytes:
        return tag + b":" + key.encode() + b":" + body + b":" + str(headers.get("h")).encode()

    return handler


async def test_a_request_reaches_the_inbox_holding_its_key_and_nobody_else(
    broker: Broker, unique_name: str, amqp_cleanup: Callable[..., None]
) -> None:
    exchange = f"{unique_name}.inbox"
    amqp_cleanup(exchange=exchange)
    await declare_inbox_exchange(broker, exchange)
    a = RpcInbox(broker, exchange=exchange, queue=f"{exchange}.a", handler=echo(b"a"))
    b = RpcInbox(broker, exchange=exchange, queue=f"{exchange}.b", handler=echo(b"b"))
    client = RpcClient(broker)
    await a.start()
    await b.start()
    try:
        await a.bind("1")
        await b.bind("2")
        assert await client.call("1", b"x", exchange=exchange, headers={"h": "v"}) == b"a:1:x:v"
        assert await client.call("2", b"y", exchange=exchange) == b"b:2:y:None"
        await a.unbind("1")
        assert a.keys == frozenset()
        with pytest.raises(PublishReturned):  # at once, not after the timeout
            await client.call("1", b"x", exchange=exchange, timeout=30)
    finally:
        await client.close()
        await a.stop()
        await b.stop()


async def test_a_failing_handler_is_an_rpc_error_for_the_caller(
    broker: Broker, unique_name: str, amqp_cleanup: Callable[..., None]
) -> None:
    exchange = f"{unique_name}.inbox"
    amqp_cleanup(exchange=exchange)

    async def broken(key: str, body: bytes, headers: Mapping[str, Any]) -> bytes:
        raise LookupError("no such thing")

    inbox = RpcInbox(broker, exchange=exchange, queue=f"{exchange}.q", handler=broken)
    client = RpcClient(broker)
    await inbox.start()
    try:
        await inbox.bind("k")
        with pytest.raises(RpcError, match="LookupError: no such thing"):
            await client.call("k", b"x", exchange=exchange, timeout=5)
    finally:
        await client.close()
        await inbox.stop()


async def test_keys_survive_a_dropped_connection(
    amqp_url: str, unique_name: str, amqp_cleanup: Callable[..., None]
) -> None:
    exchange = f"{unique_name}.inbox"
    amqp_cleanup(exchange=exchange)
    from spectacles.broker.settings import BrokerSettings

    settings = BrokerSettings(amqp_url=amqp_url, group=unique_name)
    async with (
        Broker(settings, connection_name=f"{unique_name}-inbox", reconnect_delay=0.1) as held,
        Broker(settings, connection_name=f"{unique_name}-caller") as caller,
    ):
        inbox = RpcInbox(held, exchange=exchange, queue=f"{exchange}.q", handler=echo(b"i"))
        client = RpcClient(caller)
        await inbox.start()
        try:
            await inbox.bind("7")
            # off the event loop: rabbitmqctl takes seconds, the connections' heartbeats go on
            assert await asyncio.to_thread(close_connections_named, f"{unique_name}-inbox") == 1
            await eventually(lambda: not inbox.ready)
            with pytest.raises(BrokerUnavailable):
                await inbox.bind("8")  # no queue while disconnected: a clear error, not a hang
            await eventually(lambda: inbox.ready, timeout=20)
            assert (
                await client.call("7", b"again", exchange=exchange, timeout=5) == b"i:7:again:None"
            )
        finally:
            await client.close()
            await inbox.stop()


async def test_an_exchange_of_another_kind_is_a_topology_mismatch(
    broker: Broker, unique_name: str, amqp_cleanup: Callable[..., None]
) -> None:
    exchange = f"{unique_name}.inbox"
    amqp_cleanup(exchange=exchange)
    channel = await broker.channel()
    await channel.declare_exchange(exchange, "fanout", durable=True)  # someone else's kind
    await channel.close()
    inbox = RpcInbox(broker, exchange=exchange, queue=f"{exchange}.q", handler=echo(b"i"))
    with pytest.raises(TopologyMismatch, match=exchange):
        await inbox.start()
    with pytest.raises(TopologyMismatch, match=exchange):
        await declare_inbox_exchange(broker, exchange)
