"""Gateway commands (op 3/4/8/31) from any service to the shard that must send them.

Discord only accepts a few client opcodes from a bot besides the ones the gateway itself owns
(heartbeat, identify, resume), and rejects any gateway message over 4096 bytes by closing the
shard. Validating here, in the sender, gives the caller a clear error instead of a dead letter.
The gateway validates again with :func:`parse_command` before sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

import msgspec

from spectacles.models import COMMAND_OPCODES, MAX_PAYLOAD_BYTES, Opcode, encode

from ._command_shapes import check_shape
from .errors import InvalidCommand
from .topology import Topology

__all__ = [
    "CommandPublisher",
    "GatewayCommands",
    "encode_command",
    "parse_command",
    "shard_for_guild",
    "validate_command",
]

_ALLOWED: Final = ", ".join(f"{op} {Opcode(op).name}" for op in sorted(COMMAND_OPCODES))


class CommandPublisher(Protocol):
    """The part of :class:`~spectacles.broker.Publisher` the commands helper needs."""

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
        """Publish ``body`` and return once RabbitMQ confirmed it."""
        ...


def _check_op(op: object) -> int:
    if isinstance(op, bool) or not isinstance(op, int):
        raise InvalidCommand(f"opcode must be an int, got {type(op).__name__} {op!r}", op=op)
    if op not in COMMAND_OPCODES:
        try:
            name = f"{op} ({Opcode(op).name})"
        except ValueError:
            name = str(op)
        raise InvalidCommand(
            f"opcode {name} cannot be sent as a gateway command; allowed: {_ALLOWED} "
            "(the gateway itself sends heartbeats, identify and resume)",
            op=op,
        )
    return int(op)


def _check_size(body: bytes, op: int) -> bytes:
    if len(body) > MAX_PAYLOAD_BYTES:
        raise InvalidCommand(
            f"command op {op} is {len(body)} bytes encoded; Discord closes the shard on gateway "
            f"messages over {MAX_PAYLOAD_BYTES} bytes — split it (e.g. fewer user_ids per "
            "request) or shorten it",
            op=op,
        )
    return body


def validate_command(op: int, d: object) -> bytes:
    """Encode ``{"op": op, "d": d}`` after checking the opcode, the size and the fields.

    ``d`` is a mapping or a models Struct (e.g. ``PresenceUpdate``). Raises
    :class:`InvalidCommand` naming the problem.
    """
    code = _check_op(op)
    if not isinstance(d, Mapping | msgspec.Struct):
        raise InvalidCommand(
            f"command op {code} needs a JSON object as 'd', got {type(d).__name__}", op=code
        )
    try:
        body = encode({"op": code, "d": d})
    except (TypeError, ValueError, NotImplementedError, msgspec.EncodeError) as exc:
        reason = f"command op {code} 'd' is not JSON-encodable: {exc}"
        raise InvalidCommand(reason, op=code) from None
    _check_size(body, code)
    problem = check_shape(code, encode(d))
    if problem is not None:
        raise InvalidCommand(problem, op=code)
    return body


# Bodies up to this size are decoded to name their opcode in the error even when refused.
_HINT_LIMIT: Final = 64 * 1024


def _op_hint(body: bytes) -> object:
    """The opcode of a refused body, for the error (None when it cannot be read cheaply)."""
    if len(body) > _HINT_LIMIT:
        return None
    try:
        value = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    return value.get("op") if isinstance(value, dict) else None


def parse_command(body: bytes) -> tuple[int, msgspec.Raw]:
    """Check a received command body (size, JSON shape, opcode); return ``(op, d)``.

    ``d`` is re-encoded from the decoded value, and it is what was validated: the gateway sends
    ``{"op": op, "d": d}`` built from it, never the received bytes. So a duplicate key (JSON
    leaves it undefined; msgspec keeps the last, another parser may keep the first) cannot
    smuggle a different opcode or field past validation, e.g. ``{"op": 3, "d": {}, "op": 6}``
    is an op 6 here and refused as such. Other top-level keys are dropped.
    """
    if len(body) > MAX_PAYLOAD_BYTES:
        raise InvalidCommand(
            f"command is {len(body)} bytes; gateway messages may be at most {MAX_PAYLOAD_BYTES}",
            op=_op_hint(body),
        )
    try:
        value = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        reason = f'command body must be a JSON object {{"op": int, "d": {{...}}}}: {exc}'
        raise InvalidCommand(reason, op=None) from None
    if not isinstance(value, dict) or "op" not in value:
        raise InvalidCommand('command body must be a JSON object {"op": int, "d": {...}}', op=None)
    code = _check_op(value["op"])
    d = value.get("d")
    if not isinstance(d, dict):
        raise InvalidCommand(f"command op {code} needs a JSON object as 'd'", op=code)
    raw_d = encode(d)
    problem = check_shape(code, raw_d)
    if problem is not None:
        raise InvalidCommand(problem, op=code)
    _check_size(encode_command(code, msgspec.Raw(raw_d)), code)
    return code, msgspec.Raw(raw_d)


def encode_command(op: int, d: msgspec.Raw) -> bytes:
    """The gateway payload ``{"op": op, "d": d}`` of a parsed command."""
    return encode({"op": op, "d": d})


def shard_for_guild(guild_id: int | str, shard_count: int) -> int:
    """The shard that receives ``guild_id``'s events: ``(guild_id >> 22) % shard_count``."""
    if isinstance(shard_count, bool) or not isinstance(shard_count, int) or shard_count < 1:
        raise ValueError(f"shard_count must be a positive int, got {shard_count!r}")
    try:
        guild = int(guild_id)
    except (TypeError, ValueError):
        raise ValueError(f"guild_id must be a snowflake, got {guild_id!r}") from None
    if guild < 0:
        raise ValueError(f"guild_id must be a snowflake (>= 0), got {guild_id!r}")
    return (guild >> 22) % shard_count


class GatewayCommands:
    """Send gateway commands to ``{group}.commands`` with routing key ``shard.{id}``.

    Publishes are mandatory: when no gateway has declared the shard's commands queue the caller
    gets ``PublishReturned`` instead of a silent drop.
    """

    def __init__(self, publisher: CommandPublisher, group: str | Topology = "gateway") -> None:
        self._publisher = publisher
        self.topology = group if isinstance(group, Topology) else Topology(group)

    async def send(self, shard_id: int, op: int, d: object) -> None:
        """Validate and publish one command for ``shard_id``; returns once RabbitMQ confirmed."""
        if isinstance(shard_id, bool) or not isinstance(shard_id, int) or shard_id < 0:
            raise InvalidCommand(f"shard_id must be an int >= 0, got {shard_id!r}", op=op)
        body = validate_command(op, d)
        await self._publisher.publish(
            self.topology.commands_routing_key(shard_id),
            body,
            exchange=self.topology.commands_exchange,
            headers={"shard_id": shard_id, "op": int(op)},
            type=Opcode(op).name,
            mandatory=True,
        )

    async def send_to_guild(self, guild_id: int | str, shard_count: int, op: int, d: object) -> int:
        """Send to the shard holding ``guild_id``; return that shard id."""
        shard_id = shard_for_guild(guild_id, shard_count)
        await self.send(shard_id, op, d)
        return shard_id
