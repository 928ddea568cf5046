"""Where shard sessions wait between gateway runs, so a restart RESUMEs instead of IDENTIFYing.

Three stores, chosen by `[session_store] type`:

- `amqp` (default): RabbitMQ itself, so any gateway host that takes over a shard finds its
  session. One `spectacles.broker.last_value.LastValueStore` per shard, the quorum queue
  `{group}.sessions.{shard_id}`: it always holds only the newest session. Each save is a
  persistent, confirmed message with a per-message `expiration` (the TTL); loading leaves the
  message in place. `x-expires` removes the queue of a shard nobody runs any more after a day.
- `file`: one JSON file (atomic rename), for a single host without RabbitMQ persistence.
- `none`: always IDENTIFY.

A loaded session older than the TTL, or of another shard count, is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Final, Protocol

import msgspec

from spectacles.broker.broker import Broker
from spectacles.broker.last_value import LastValueStore
from spectacles.observability import get_logger

from .config import SessionStoreSettings
from .session import SessionState

__all__ = [
    "AmqpSessionStore",
    "FileSessionStore",
    "NullSessionStore",
    "SessionStore",
    "create_session_store",
    "session_queue_name",
]

log = get_logger("spectacles.gateway.session_store")

# Unused session queues (a shard moved to another shard count, a test) disappear after this.
QUEUE_EXPIRES_MS: Final = 24 * 3600 * 1000
STORE_TIMEOUT: Final = 5.0
_decode_state: Final = msgspec.json.Decoder(SessionState).decode


class SessionStore(Protocol):
    """Persists each shard's `SessionState`."""

    async def load(self, shard_id: int, shard_count: int) -> SessionState | None:
        """The saved session of `shard_id`, or None when there is none still valid."""

    async def save(self, state: SessionState) -> None:
        """Replace the saved session of `state.shard_id`."""

    async def close(self) -> None:
        """Release resources (the broker connection belongs to the caller)."""


def _valid(state: SessionState | None, shard_count: int, ttl: float) -> SessionState | None:
    if state is None or state.shard_count != shard_count:
        return None
    if ttl and state.saved_at + ttl < time.time():
        return None
    return state


def session_queue_name(group: str, shard_id: int) -> str:
    """The queue holding the session of `shard_id` in `group`."""
    return f"{group}.sessions.{shard_id}"


class NullSessionStore:
    """Remembers nothing: every start IDENTIFYs."""

    async def load(self, shard_id: int, shard_count: int) -> SessionState | None:
        """Always None."""
        return None

    async def save(self, state: SessionState) -> None:
        """Forget it."""

    async def close(self) -> None:
        """Nothing to release."""


class FileSessionStore:
    """All shards' sessions in one JSON file, replaced atomically on each save."""

    def __init__(self, path: Path, ttl: float) -> None:
        self._path = path
        self._ttl = ttl
        self._lock = asyncio.Lock()  # one file job at a time, queued on the loop
        # A cancelled save leaves its thread running: this keeps the next one from interleaving.
        self._file_lock = threading.Lock()

    def _read(self) -> dict[str, SessionState]:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = msgspec.json.decode(raw, type=dict[str, SessionState])
        except msgspec.DecodeError:
            log.warning("session file unreadable; starting fresh", path=str(self._path))
            return {}
        return data

    def _write(self, sessions: dict[str, SessionState]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=f".{self._path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgspec.json.encode(sessions))
                fh.flush()
                os.fsync(fh.fileno())  # the rename must never expose a file still being written
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _load_all(self) -> dict[str, SessionState]:
        with self._file_lock:
            return self._read()

    def _replace(self, state: SessionState) -> None:
        with self._file_lock:
            sessions = self._read()
            sessions[str(state.shard_id)] = state
            self._write(sessions)

    # Disk I/O (an fsync, a slow or network file system) must not stall the event loop, which
    # relays every shard's events: the file work runs in a thread, one job at a time.

    async def load(self, shard_id: int, shard_count: int) -> SessionState | None:
        """The saved, unexpired session of `shard_id`."""
        async with self._lock:
            sessions = await asyncio.to_thread(self._load_all)
        return _valid(sessions.get(str(shard_id)), shard_count, self._ttl)

    async def save(self, state: SessionState) -> None:
        """Write the file with this shard's entry replaced (temp file + `os.replace`)."""
        async with self._lock:
            await asyncio.to_thread(self._replace, state)

    async def close(self) -> None:
        """Nothing to release."""


class AmqpSessionStore:
    """Sessions in RabbitMQ: one last-value queue per shard (see the module docstring)."""

    def __init__(self, broker: Broker, ttl: float) -> None:
        self._broker = broker
        self._group = broker.topology.group
        self._ttl = ttl
        self._values: dict[int, LastValueStore] = {}

    def _value(self, shard_id: int) -> LastValueStore:
        """The shard's queue: quorum, replicated on a cluster (an older classic one stays)."""
        value = self._values.get(shard_id)
        if value is None:
            value = self._values[shard_id] = LastValueStore(
                self._broker,
                session_queue_name(self._group, shard_id),
                queue_type="quorum",
                expires_ms=QUEUE_EXPIRES_MS,
                timeout=STORE_TIMEOUT,
            )
        return value

    async def load(self, shard_id: int, shard_count: int) -> SessionState | None:
        """Peek at the shard's queue: get the message, then put it back."""
        raw = await self._value(shard_id).read()
        if raw is None:
            return None
        try:
            state = _decode_state(raw)
        except msgspec.DecodeError:
            log.warning("ignoring an unreadable stored session", shard_id=shard_id)
            return None
        return _valid(state, shard_count, self._ttl)

    async def save(self, state: SessionState) -> None:
        """Publish the session (confirmed); drop-head discards the previous one."""
        await self._value(state.shard_id).write(
            msgspec.json.encode(state),
            ttl=self._ttl or None,
            message_id=f"{state.shard_id}:{state.session_id}:{state.seq}",
        )

    async def close(self) -> None:
        """Close the store's channels."""
        for value in self._values.values():
            await value.close()


def create_session_store(settings: SessionStoreSettings, broker: Broker | None) -> SessionStore:
    """The store `settings` ask for (`amqp` needs the control `broker`)."""
    if settings.type == "none":
        return NullSessionStore()
    if settings.type == "file":
        return FileSessionStore(Path(settings.path), settings.ttl)
    if broker is None:
        raise ValueError("the amqp session store needs a broker connection")
    return AmqpSessionStore(broker, settings.ttl)
