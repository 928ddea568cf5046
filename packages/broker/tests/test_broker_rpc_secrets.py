"""An RPC handler's error text goes back in the ``x-error`` header: never with a secret in it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from spectacles.broker.broker import Broker
from spectacles.broker.errors import RpcError
from spectacles.broker.rpc import RpcClient, RpcServer
from spectacles.observability import register_secret


async def test_rpc_error_header_carries_no_token_or_password(
    broker: Broker, unique_name: str, amqp_cleanup: Any
) -> None:
    queue = f"{unique_name}.rpc"
    amqp_cleanup(queue=queue)
    token = f"rpc-token-{unique_name}-Mx93"
    register_secret(token)  # what RestClient does with the bot token

    async def handler(body: bytes, headers: Mapping[str, Any]) -> bytes:
        raise RuntimeError(
            f"401 for Authorization: Bot {token} via amqp://gw:hunter2-pass@rabbit:5672/"
        )

    server = RpcServer(broker, queue, handler)
    client = RpcClient(broker)
    await server.start()
    try:
        with pytest.raises(RpcError) as info:
            await client.call(queue, b"x")
    finally:
        await client.close()
        await server.stop()
    error = info.value.remote_error
    assert error.startswith("RuntimeError: 401 for Authorization")
    assert token not in error and "hunter2-pass" not in error
