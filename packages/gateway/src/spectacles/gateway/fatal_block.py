"""The fatal-close block: after 4004 or 4010-4014, this token does not IDENTIFY for a while.

A fatal close ends the process (exit 1) and a supervisor (`restart: unless-stopped`) starts it
again; without a memory of the close, every restart would IDENTIFY once more, and Discord
resets tokens that IDENTIFY in a loop. So the close is recorded in RabbitMQ, in the last-value
queue `{group}.fatal.{fingerprint}`, where every gateway of the bot (on any host, after any
restart) finds it. The fingerprint is a hash of the token, never the token: a new token has
another fingerprint, which is why changing the token lifts the block at once. The record
expires after `gateway.fatal_block` seconds (also as a per-message TTL, so RabbitMQ drops it).
"""

from __future__ import annotations

import hashlib
import time
from typing import Final

import msgspec

from spectacles.broker.broker import Broker
from spectacles.broker.last_value import LastValueStore
from spectacles.models import ClosePolicy, close_policy

from .errors import IdentifyBlocked

__all__ = ["FatalBlock", "FatalBlockStore", "fatal_block_queue_name", "token_fingerprint"]

FINGERPRINT_LENGTH: Final = 16


def token_fingerprint(token: str) -> str:
    """A short, non-reversible name for `token` (hex of its SHA-256)."""
    return hashlib.sha256(token.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def fatal_block_queue_name(group: str, fingerprint: str) -> str:
    """The queue holding the block of the token with `fingerprint`."""
    return f"{group}.fatal.{fingerprint}"


class FatalBlock(msgspec.Struct, frozen=True, kw_only=True):
    """A fatal close of the token with `fingerprint`: what, when (wall clock), on which shard."""

    fingerprint: str
    code: int
    at: float
    shard_id: int

    @property
    def policy(self) -> ClosePolicy:
        """The close code's policy: its name, cause and fix for the operator."""
        return close_policy(self.code)

    def remaining(self, duration: float, now: float | None = None) -> float:
        """Seconds the block still lasts when it lasts `duration` in all (0: over)."""
        current = time.time() if now is None else now
        return max(0.0, self.at + duration - current)

    def error(self, duration: float) -> IdentifyBlocked:
        """The refusal that names the cause and the fix."""
        policy = self.policy
        return IdentifyBlocked(
            self.code, policy.name, policy.cause, policy.fix, self.remaining(duration)
        )


_decode: Final = msgspec.json.Decoder(FatalBlock).decode


class FatalBlockStore:
    """Reads, records and clears the block of one token in RabbitMQ."""

    def __init__(self, broker: Broker, token: str, duration: float) -> None:
        self.fingerprint = token_fingerprint(token)
        self.duration = duration
        self._value = LastValueStore(
            broker, fatal_block_queue_name(broker.topology.group, self.fingerprint)
        )

    async def load(self) -> FatalBlock | None:
        """The block still in force, or None (none recorded, expired, or unreadable)."""
        raw = await self._value.read()
        if raw is None:
            return None
        try:
            block = _decode(raw)
        except msgspec.DecodeError:
            return None
        if block.fingerprint != self.fingerprint or block.remaining(self.duration) <= 0:
            return None
        return block

    async def record(self, code: int, shard_id: int) -> FatalBlock:
        """Remember that Discord closed this token's session with fatal `code`."""
        block = FatalBlock(
            fingerprint=self.fingerprint, code=code, at=time.time(), shard_id=shard_id
        )
        await self._value.write(msgspec.json.encode(block), ttl=self.duration or None)
        return block

    async def clear(self) -> None:
        """Lift the block (the operator fixed the cause)."""
        await self._value.clear()

    async def close(self) -> None:
        """Close the store's channel."""
        await self._value.close()
