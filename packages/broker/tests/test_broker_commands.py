"""Gateway commands: validation, shard choice, and publishing to the commands exchange."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import aio_pika
import msgspec
import pytest
from aio_pika.abc import AbstractChannel

from spectacles.broker.commands import (
    GatewayCommands,
    parse_command,
    shard_for_guild,
    validate_command,
)
from spectacles.broker.errors import InvalidCommand, PublishReturned
from spectacles.broker.settings import BrokerSettings
from spectacles.broker.topology import Topology

from .conftest import eventually

GUILD = "81384788765712384"
VALID_D: dict[int, dict[str, Any]] = {
    3: {
        "since": None,
        "activities": [{"name": "chess", "type": 0}],
        "status": "idle",
        "afk": False,
    },
    4: {"guild_id": GUILD, "channel_id": None, "self_mute": False, "self_deaf": True},
    8: {"guild_id": GUILD, "query": "", "limit": 0},
    31: {"guild_ids": [GUILD]},
}


@pytest.mark.parametrize("op", [3, 4, 8, 31])
def test_allowed_opcodes_encode_op_and_d(op: int) -> None:
    body = validate_command(op, VALID_D[op])
    assert json.loads(body) == {"op": op, "d": VALID_D[op]}
    assert parse_command(body)[0] == op


@pytest.mark.parametrize(
    ("op", "d", "problem"),
    [
        (3, {**VALID_D[3], "status": "busy"}, "status"),
        (3, {"status": "online"}, "missing required field `since`"),
        (3, {**VALID_D[3], "activities": "chess"}, "activities"),
        (4, {"guild_id": GUILD, "self_mute": False, "self_deaf": False}, "channel_id"),
        (8, {"guild_id": GUILD, "limit": 0}, "needs 'query' or 'user_ids'"),
        (8, {"guild_id": GUILD, "query": "", "limit": 0, "nonce": "n" * 33}, "at most 32 bytes"),
        (8, {"query": "", "limit": 0}, "guild_id"),
        (31, {"guild_ids": GUILD}, "guild_ids"),
    ],
)
def test_malformed_commands_are_rejected_by_sender_and_gateway(
    op: int, d: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(problem)) as info:
        validate_command(op, d)
    assert info.value.op == op
    body = json.dumps({"op": op, "d": d}).encode()
    with pytest.raises(InvalidCommand, match=re.escape(problem)):
        parse_command(body)


def test_unknown_extra_fields_pass() -> None:
    assert json.loads(validate_command(31, {**VALID_D[31], "future_field": 1}))["d"]["future_field"]


@pytest.mark.parametrize("op", [0, 1, 2, 6, 7, 9, 10, 11, 99, -1])
def test_other_opcodes_are_rejected_naming_the_allowed_ones(op: int) -> None:
    with pytest.raises(InvalidCommand) as info:
        validate_command(op, {})
    message = str(info.value)
    assert f"opcode {op}" in message
    assert "3 PRESENCE_UPDATE" in message and "31 REQUEST_SOUNDBOARD_SOUNDS" in message
    assert info.value.op == op


def test_identify_is_named_when_rejected() -> None:
    with pytest.raises(InvalidCommand, match=r"opcode 2 \(IDENTIFY\)"):
        validate_command(2, {"token": "x"})


@pytest.mark.parametrize("op", ["3", 3.0, True, None])
def test_non_int_opcodes_are_rejected(op: object) -> None:
    with pytest.raises(InvalidCommand, match="opcode must be an int"):
        validate_command(op, {})  # type: ignore[arg-type]


def test_payload_at_the_limit_passes_and_one_byte_more_fails() -> None:
    base = {"guild_id": GUILD, "limit": 0, "query": ""}
    overhead = len(validate_command(8, base))
    exact = validate_command(8, {**base, "query": "a" * (4096 - overhead)})
    assert len(exact) == 4096
    with pytest.raises(InvalidCommand, match="4097 bytes") as info:
        validate_command(8, {**base, "query": "a" * (4097 - overhead)})
    assert "4096" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_d_must_be_a_json_object() -> None:
    with pytest.raises(InvalidCommand, match="JSON object"):
        validate_command(3, [1, 2])
    with pytest.raises(InvalidCommand, match="JSON-encodable"):
        validate_command(3, {"x": object()})


def test_structs_are_accepted_as_d() -> None:
    class Presence(msgspec.Struct):
        status: str
        since: int | None = None
        activities: list[dict[str, Any]] = msgspec.field(default_factory=list)
        afk: bool = False

    assert json.loads(validate_command(3, Presence("idle"))) == {
        "op": 3,
        "d": {"status": "idle", "since": None, "activities": [], "afk": False},
    }


def test_parse_command_accepts_valid_and_rejects_invalid_bodies() -> None:
    op, d = parse_command(b'{"op": 8, "d": {"guild_id": "1", "limit": 0, "query": ""}}')
    assert op == 8
    assert json.loads(bytes(d)) == {"guild_id": "1", "limit": 0, "query": ""}
    with pytest.raises(InvalidCommand, match="opcode 2"):
        parse_command(b'{"op": 2, "d": {}}')
    with pytest.raises(InvalidCommand, match="JSON object"):
        parse_command(b"not json")
    with pytest.raises(InvalidCommand, match="'d'"):
        parse_command(b'{"op": 3, "d": 5}')
    with pytest.raises(InvalidCommand, match="at most 4096") as info:
        parse_command(b'{"op": 8, "d": {"q": "' + b"a" * 5000 + b'"}}')
    assert info.value.op == 8


def test_shard_for_guild() -> None:
    guild = 81384788765712384  # Discord API guild; (id >> 22) = 19403588567
    assert shard_for_guild(guild, 1) == 0
    assert shard_for_guild(guild, 16) == (guild >> 22) % 16
    assert shard_for_guild(str(guild), 16) == shard_for_guild(guild, 16)
    assert shard_for_guild(175928847299117063, 10) == 41944705796 % 10
    for count in (0, -1, True):
        with pytest.raises(ValueError, match="shard_count"):
            shard_for_guild(guild, count)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="guild_id"):
        shard_for_guild("general", 2)
    with pytest.raises(ValueError, match="guild_id"):
        shard_for_guild(-5, 2)


class _AioPikaPublisher:
    """Minimal stand-in with the Publisher.publish signature, on a real confirm channel."""

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        exchange: str | None = None,
        headers: Mapping[str, Any] | None = None,
        type: str | None = None,
        mandatory: bool = False,
    ) -> None:
        target = await self.channel.get_exchange(exchange or "", ensure=False)
        try:
            await target.publish(
                aio_pika.Message(body, headers=dict(headers or {}), type=type),
                routing_key=routing_key,
                mandatory=mandatory,
            )
        except aio_pika.exceptions.PublishError:
            raise PublishReturned(
                "unroutable", exchange=exchange or "", routing_key=routing_key
            ) from None


async def test_gateway_commands_reach_the_shards_queue(
    amqp_url: str, broker_settings: BrokerSettings, amqp_cleanup
) -> None:
    topology = Topology(broker_settings.group)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(on_return_raises=True)
        exchange = await channel.declare_exchange(
            topology.commands_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        shard_queue = await channel.declare_queue(topology.commands_queue(5), auto_delete=False)
        amqp_cleanup(queue=shard_queue.name)
        await shard_queue.bind(exchange, routing_key=topology.commands_routing_key(5))
        commands = GatewayCommands(_AioPikaPublisher(channel), broker_settings.group)

        guild = next(g << 22 for g in range(100) if (g % 8) == 5)
        request = {"guild_id": str(guild), "query": "", "limit": 0}
        assert await commands.send_to_guild(guild, 8, 8, request) == 5
        received: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def arrived() -> bool:
            message = await shard_queue.get(fail=False, no_ack=True)
            if message:
                received.append(message)
            return bool(received)

        await eventually(arrived)
        assert json.loads(received[0].body) == {"op": 8, "d": request}
        assert received[0].headers["shard_id"] == 5
        assert received[0].type == "REQUEST_GUILD_MEMBERS"

        with pytest.raises(PublishReturned):
            await commands.send(6, 3, VALID_D[3])  # no gateway runs shard 6
        with pytest.raises(InvalidCommand):
            await commands.send(5, 2, {})
        with pytest.raises(InvalidCommand, match="shard_id"):
            await commands.send(-1, 3, {})


def test_topology_names() -> None:
    t = Topology("gateway")
    assert t.events_exchange == "gateway"
    assert t.worker_queue("ping") == "gateway.ping"
    assert t.dlx == "gateway.dlx"
    assert t.dead_queue("ping") == "gateway.ping.dead"
    assert t.commands_exchange == "gateway.commands"
    assert t.commands_routing_key(3) == "shard.3"
    assert t.commands_queue(3) == "gateway.commands.shard.3"
    with pytest.raises(ValueError, match="worker name"):
        t.worker_queue("")
