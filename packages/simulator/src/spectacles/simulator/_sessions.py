"""Gateway sessions: what survives a dropped connection so the client can RESUME."""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any, Protocol

__all__ = ["PayloadSink", "Session"]


class PayloadSink(Protocol):
    """Where a live session's payloads go (a websocket connection)."""

    def send(self, payload: bytes) -> None:
        """Write one payload now, without waiting."""
        ...


class Session:
    """A gateway session: sequence numbers, the replay buffer and the connection it is on."""

    __slots__ = (
        "_buffer",
        "connection",
        "detached_at",
        "intents",
        "num_shards",
        "presence",
        "presence_updates",
        "seq",
        "session_id",
        "shard_id",
    )

    def __init__(
        self, session_id: str, shard_id: int, num_shards: int, intents: int, buffer_size: int
    ) -> None:
        self.session_id = session_id
        self.shard_id = shard_id
        self.num_shards = num_shards
        self.intents = intents
        self.seq = 0
        self._buffer: deque[bytes] = deque(maxlen=buffer_size)
        self.connection: PayloadSink | None = None
        self.detached_at: float | None = None
        # The bot's presence as the client last set it (IDENTIFY or op 3); None until then.
        self.presence: dict[str, Any] | None = None
        self.presence_updates = 0

    def owns_guild(self, guild_id: int | None) -> bool:
        """Whether events of `guild_id` go to this session (guild-less ones go to shard 0)."""
        if guild_id is None:
            return self.shard_id == 0
        return (guild_id >> 22) % self.num_shards == self.shard_id

    def record(self, event: bytes, data: bytes) -> bytes:
        """Number the next dispatch, keep it for replay and return the payload bytes."""
        self.seq = seq = self.seq + 1
        payload = b'{"t":"%b","s":%d,"op":0,"d":%b}' % (event, seq, data)
        self._buffer.append(payload)
        return payload

    def keep(self, payload: bytes) -> None:
        """Keep an already numbered payload (built by the flood fast path) for replay."""
        self._buffer.append(payload)

    def replay_after(self, seq: int) -> list[bytes] | None:
        """Payloads with `s > seq`; None when `seq` is ahead of the session or already evicted."""
        first = self.seq - len(self._buffer) + 1
        if seq > self.seq or seq < 0 or seq + 1 < first:
            return None
        return list(islice(self._buffer, seq + 1 - first, None))

    def set_presence(self, presence: dict[str, Any], *, update: bool) -> None:
        """Record the presence the client set (`update`: by an op 3, which is counted)."""
        self.presence = presence
        if update:
            self.presence_updates += 1

    def attach(self, connection: PayloadSink) -> None:
        """The session is live on `connection`."""
        self.connection = connection
        self.detached_at = None

    def detach(self, now: float) -> None:
        """The connection is gone; the session stays resumable until it expires."""
        self.connection = None
        self.detached_at = now

    def expired(self, now: float, ttl: float) -> bool:
        """Whether a detached session has outlived its resume window."""
        return self.detached_at is not None and now - self.detached_at > ttl
