"""Exclusive leases in RabbitMQ: a hold on a name that dies with its holder's connection.

A lease is an exclusive, server-named-by-us queue (``queue.declare exclusive=true``). RabbitMQ lets
only one connection declare it (another gets ``405 RESOURCE_LOCKED``) and deletes it the moment that
connection closes: a crashed process, a killed socket or missed heartbeats end its leases, with no
coordinator and no clock shared between processes.

A :class:`LeaseHolder` owns one dedicated connection (never reconnected: a new connection is a new
holder) and any number of leases on it. It probes its leases every ``probe_interval`` and declares
itself *lost* when no probe sent in the last ``probe_timeout`` seconds was answered, or at once when
the connection closes. So a holder learns of a loss at most ``probe_timeout`` after the server
could last have seen it alive; a claimant that waits longer than that (plus the time the holder
needs to stop its work) after taking a lease can be sure the previous holder has stopped, even
when the holder was cut off from RabbitMQ and was never told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Self

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection

from spectacles.observability import get_logger, register_secret

from ._close import close_within
from ._endpoints import connect_first
from .broker import CONNECTION_ERRORS, default_connection_name
from .errors import BrokerError, BrokerUnavailable
from .settings import BrokerSettings

__all__ = ["Lease", "LeaseHolder", "LeaseLost", "LeaseTimeout", "LostListener"]

log = get_logger(__name__)

LostListener = Callable[[], None]


class LeaseLost(BrokerError):
    """The holder's connection is gone: its leases are no longer held."""


class LeaseTimeout(BrokerError):
    """A waiting :meth:`LeaseHolder.acquire` did not get the lease in time."""


class Lease:
    """One held name. :attr:`lost` is set when it is no longer held (released or lost)."""

    def __init__(self, holder: LeaseHolder, name: str, channel: AbstractChannel) -> None:
        self.holder = holder
        self.name = name
        self._channel = channel
        self._ended = asyncio.Event()
        self._released = False
        self._listeners: list[LostListener] = []

    @property
    def is_held(self) -> bool:
        """True until the lease is released or lost."""
        return not self._ended.is_set()

    @property
    def was_released(self) -> bool:
        """True when it ended by :meth:`release` (not by a loss)."""
        return self._released

    async def wait_ended(self) -> None:
        """Return once the lease is released or lost."""
        await self._ended.wait()

    def on_lost(self, listener: LostListener) -> None:
        """Call ``listener()`` (synchronously, in the event loop) if the lease is lost."""
        if self._ended.is_set() and not self._released:
            listener()
        else:
            self._listeners.append(listener)

    async def release(self) -> None:
        """Give the lease up (delete its queue) so another process can take it; idempotent."""
        if self._ended.is_set():
            return
        self._released = True
        self._ended.set()
        self.holder._forget(self)
        with contextlib.suppress(Exception):  # a dead connection released it already
            await asyncio.wait_for(self._channel.queue_delete(self.name), timeout=5.0)
        await close_within(self._channel.close(), 5.0)

    def _lose(self, reason: str) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        log.warning("lease.lost", lease=self.name, reason=reason)
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("lease.listener_failed", lease=self.name)

    async def _probe(self) -> bool:
        """True while the queue still exists; False when it vanished (deleted by an operator)."""
        if not self.is_held:
            return True
        try:
            await self._channel.declare_queue(self.name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        except Exception:
            if not self.is_held:  # released while the probe was in flight
                return True
            raise
        return True


class LeaseHolder:
    """A dedicated connection that holds exclusive leases and notices their loss.

    ``heartbeat`` (whole seconds) is the AMQP heartbeat RabbitMQ uses to notice a silent holder;
    ``probe_timeout`` bounds how long the holder may believe in a lease the server may have ended.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        connection_name: str | None = None,
        heartbeat: int = 2,
        probe_interval: float = 0.5,
        probe_timeout: float = 2.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if heartbeat < 1:
            raise ValueError(f"lease heartbeat must be at least 1 second, got {heartbeat}")
        if not 0 < probe_interval < probe_timeout:
            raise ValueError(
                f"lease probe_interval ({probe_interval}) must be positive and below "
                f"probe_timeout ({probe_timeout})"
            )
        self.settings = settings
        self.connection_name = connection_name or default_connection_name("lease")
        self._heartbeat = heartbeat
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._connect_timeout = connect_timeout
        self._connection: AbstractConnection | None = None
        self._leases: dict[str, Lease] = {}
        self._lost = asyncio.Event()
        self._closing = False
        self._listeners: list[LostListener] = []
        self._probe_task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection; raise :class:`BrokerUnavailable` when RabbitMQ does not answer."""
        if self._connection is not None:
            return
        for password in self.settings.passwords:
            register_secret(password)
        try:
            _, connection = await connect_first(self.settings.endpoints, self._open_node)
        except (BrokerUnavailable, *CONNECTION_ERRORS) as exc:
            raise BrokerUnavailable(
                f"cannot open a lease connection to RabbitMQ at {self.settings.host}: "
                f"{type(exc).__name__}",
                host=self.settings.host,
            ) from None
        self._connection = connection
        connection.close_callbacks.add(self._on_close)
        self._probe_task = asyncio.create_task(
            self._probe_loop(), name=f"lease-probe:{self.connection_name}"
        )

    async def close(self) -> None:
        """Release every lease and close the connection (idempotent)."""
        self._closing = True
        for lease in list(self._leases.values()):
            await lease.release()
        await self._stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- use ----------------------------------------------------------------------------------

    @property
    def is_lost(self) -> bool:
        """True once the connection is gone (closed by us or not): no lease is held any more."""
        return self._lost.is_set()

    @property
    def held(self) -> tuple[str, ...]:
        """Names of the leases held now."""
        return tuple(self._leases)

    async def wait_lost(self) -> None:
        """Return once the holder has lost its connection."""
        await self._lost.wait()

    def on_lost(self, listener: LostListener) -> None:
        """Call ``listener()`` synchronously when the connection is lost (not on :meth:`close`)."""
        self._listeners.append(listener)

    async def try_acquire(self, name: str) -> Lease | None:
        """Take ``name`` if nobody holds it: the lease, or ``None`` when another holder has it."""
        if name in self._leases:
            return self._leases[name]
        connection = self._live_connection()
        try:
            channel = await connection.channel()
            await channel.declare_queue(name, exclusive=True, durable=False, auto_delete=False)
        except aiormq.exceptions.ChannelLockedResource:
            return None  # RESOURCE_LOCKED: another connection holds it
        except (RuntimeError, *CONNECTION_ERRORS) as exc:
            if self._lost.is_set() or self._closing:
                raise LeaseLost(f"lease connection {self.connection_name} is gone") from None
            raise BrokerUnavailable(
                f"lease {name!r}: {type(exc).__name__}: {exc}", host=self.settings.host
            ) from None
        if self._lost.is_set():  # lost while declaring: the queue died with the connection
            raise LeaseLost(f"lease connection {self.connection_name} is gone")
        lease = Lease(self, name, channel)
        self._leases[name] = lease
        log.info("lease.acquired", lease=name, holder=self.connection_name)
        return lease

    async def acquire(
        self, name: str, *, timeout: float | None = None, retry_interval: float = 0.5
    ) -> Lease:
        """Wait until ``name`` is free and take it; :class:`LeaseTimeout` after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            lease = await self.try_acquire(name)
            if lease is not None:
                return lease
            if deadline is not None and loop.time() + retry_interval > deadline:
                raise LeaseTimeout(f"lease {name!r} still held elsewhere after {timeout}s")
            await asyncio.sleep(retry_interval)

    # -- internals ----------------------------------------------------------------------------

    async def _open_channel(self) -> AbstractChannel:
        """A channel on the holder's connection, for what must die with it (a roster)."""
        connection = self._live_connection()
        try:
            return await connection.channel()
        except (RuntimeError, *CONNECTION_ERRORS):
            if self._lost.is_set() or self._closing:
                raise LeaseLost(f"lease connection {self.connection_name} is gone") from None
            raise

    async def _open_node(self, url: str) -> AbstractConnection:
        return await aio_pika.connect(
            url,
            timeout=self._connect_timeout,
            heartbeat=self._heartbeat,
            client_properties={"connection_name": self.connection_name},
        )

    def _live_connection(self) -> AbstractConnection:
        if self._connection is None:
            raise RuntimeError("LeaseHolder.start() was not called")
        if self._lost.is_set() or self._closing:
            raise LeaseLost(f"lease connection {self.connection_name} is gone")
        return self._connection

    def _forget(self, lease: Lease) -> None:
        if self._leases.get(lease.name) is lease:
            del self._leases[lease.name]

    def _on_close(self, sender: object, exc: BaseException | None = None) -> None:
        self._lose(f"connection closed: {exc!r}" if exc else "connection closed")

    def _lose(self, reason: str) -> None:
        """Mark every lease and the holder lost, tell the listeners, then drop the connection."""
        if self._lost.is_set():
            return
        self._lost.set()
        if self._closing:
            return
        log.warning("lease.holder_lost", holder=self.connection_name, reason=reason)
        leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            lease._lose(reason)
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("lease.listener_failed", holder=self.connection_name)
        asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        self._lost.set()
        task, self._probe_task = self._probe_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        connection = self._connection
        if connection is not None and not connection.is_closed:
            await close_within(connection.close(), 2.0)

    async def _probe_loop(self) -> None:
        """Prove every ``probe_interval`` that the leases still exist; give up after the timeout."""
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        while not self._lost.is_set():
            sent = loop.time()
            budget = last_ok + self._probe_timeout - sent
            leases = list(self._leases.values())
            try:
                if budget <= 0:
                    raise TimeoutError
                if leases:
                    alive = await asyncio.wait_for(
                        asyncio.gather(*(lease._probe() for lease in leases)), timeout=budget
                    )
                else:  # nothing held: a channel round trip still proves the connection
                    connection = self._live_connection()
                    channel = await asyncio.wait_for(connection.channel(), timeout=budget)
                    await asyncio.wait_for(channel.close(), timeout=budget)
                    alive = []
            except TimeoutError:
                self._lose(f"no answer from RabbitMQ for {self._probe_timeout}s")
                return
            except LeaseLost:
                return
            except (RuntimeError, *CONNECTION_ERRORS) as exc:
                self._lose(f"probe failed: {type(exc).__name__}")
                return
            last_ok = sent
            for lease, ok in zip(leases, alive, strict=True):
                if not ok and lease.is_held:
                    self._forget(lease)
                    lease._lose("its queue was deleted")
            await asyncio.sleep(self._probe_interval)
