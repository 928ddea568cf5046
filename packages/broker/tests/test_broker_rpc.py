"""RPC over direct reply-to against a real RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from spectacles.broker.broker import Broker
from spectacles.broker.errors import PublishReturned, RpcError, RpcTimeout
from spectacles.broker.rpc import RpcClient, RpcServer


async def test_rpc_round_trip_with_headers_and_concurrent_calls(
    broker: Broker, unique_name: str, amqp_cleanup
) -> None:
    queue = f"{unique_name}.rpc"
    amqp_cleanup(queue=queue)

    async def handler(body: bytes, headers: Mapping[str, Any]) -> bytes:
        await asyncio.sleep(0.01)
        return body.upper() + b"|" + str(headers.get("who")).encode()

    server = RpcServer(broker, queue, handler)
    client = RpcClient(broker)
    await server.start()
    try:
        assert await client.call(queue, b"ping", headers={"who": "me"}) == b"PING|me"
        replies = await asyncio.gather(
            *(client.call(queue, f"m{i}".encode(), timeout=5) for i in range(20))
        )
        assert replies == [f"M{i}|None".encode() for i in range(20)]
    finally:
        await client.close()
        await server.stop()


async def test_rpc_times_out_when_the_server_does_not_answer(
    broker: Broker, unique_name: str, amqp_cleanup
) -> None:
    queue = f"{unique_name}.rpc"
    amqp_cleanup(queue=queue)
    release = asyncio.Event()

    async def handler(body: bytes, headers: Mapping[str, Any]) -> bytes:
        await release.wait()
        return b"late"

    server = RpcServer(broker, queue, handler, stop_timeout=2)
    client = RpcClient(broker)
    await server.start()
    try:
        with pytest.raises(RpcTimeout) as info:
            await client.call(queue, b"x", timeout=0.3)
        assert info.value.timeout == 0.3
        assert info.value.routing_key == queue
    finally:
        release.set()
        await client.close()
        await server.stop()


async def test_rpc_to_a_queue_nobody_serves_fails_fast(broker: Broker, unique_name: str) -> None:
    client = RpcClient(broker)
    try:
        with pytest.raises(PublishReturned, match="no queue takes RPC requests"):
            await client.call(f"{unique_name}.nobody", b"x", timeout=10)
    finally:
        await client.close()


async def test_rpc_handler_error_is_raised_to_the_caller(
    broker: Broker, unique_name: str, amqp_cleanup
) -> None:
    queue = f"{unique_name}.rpc"
    amqp_cleanup(queue=queue)

    async def handler(body: bytes, headers: Mapping[str, Any]) -> bytes:
        raise KeyError("no such guild")

    server = RpcServer(broker, queue, handler)
    client = RpcClient(broker)
    await server.start()
    try:
        with pytest.raises(RpcError) as info:
            await client.call(queue, b"x")
        assert info.value.remote_error == "KeyError: 'no such guild'"
    finally:
        await client.close()
        await server.stop()
