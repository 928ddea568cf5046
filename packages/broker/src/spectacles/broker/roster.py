"""Who is alive in a group of processes, through RabbitMQ only: a roster of announcing members.

Every member announces itself on a fanout exchange every ``interval`` seconds and listens on an
exclusive queue bound to it, ``{exchange}.{member_id}.{incarnation}``. A member unheard for
``timeout`` seconds is gone; one that says it is leaving is gone at once. The announcements
travel on a :class:`LeaseHolder`'s connection, so a member that lost its leases also stops
announcing: a roster and the leases of one process live and die together. An observer
(``announce=False``) only listens: ``spectacles-gateway status``.

Each announcement carries ``data``, whatever the member wants its peers (and operators) to see:
the gateway puts the state of each shard it owns there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import msgspec
from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from spectacles.observability import get_logger

from ._close import close_within
from ._translate import BROKER_FAILURES
from .errors import BrokerUnavailable
from .lease import LeaseHolder, LeaseLost

__all__ = ["Member", "Roster"]

log = get_logger(__name__)


class Member(msgspec.Struct, frozen=True):
    """One announcement: who, where, since when, and its ``data``."""

    id: str
    host: str
    pid: int
    started_at: float  # wall clock, for operators
    incarnation: int = 0  # a new lease connection of the same process counts up
    leaving: bool = False
    data: dict[str, Any] = {}


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Member).decode


class Roster:
    """The live members of ``exchange``'s group as this process sees them."""

    def __init__(
        self,
        holder: LeaseHolder,
        exchange: str,
        member_id: str,
        *,
        interval: float = 1.0,
        timeout: float = 3.0,
        describe: Callable[[], dict[str, Any]] | None = None,
        announce: bool = True,
        incarnation: int = 0,
    ) -> None:
        if not 0 < interval < timeout:
            raise ValueError(
                f"roster interval ({interval}) must be positive and below its timeout ({timeout})"
            )
        self._holder = holder
        self.exchange = exchange
        self.member_id = member_id
        self._interval = interval
        self._timeout = timeout
        self._describe = describe or dict
        self._announce = announce
        self._incarnation = incarnation
        self._started_at = time.time()
        self._heard: dict[str, tuple[float, Member]] = {}  # id -> (monotonic time heard, member)
        self.left: set[str] = set()  # members that said they were leaving (not timed out)
        self._ids: tuple[str, ...] = ()
        self._changed = asyncio.Event()
        self.changed_at = time.monotonic()
        self._channel: AbstractChannel | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._leaving = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Declare the exchange and this member's queue, start listening and announcing."""
        try:
            channel = await self._holder._open_channel()
            exchange = await channel.declare_exchange(self.exchange, "fanout", durable=True)
            # Named after the member (not amq.gen-*), so a permission regex can grant it.
            queue = await channel.declare_queue(
                f"{self.exchange}.{self.member_id}.{self._incarnation}",
                exclusive=True,
                auto_delete=True,
            )
            await queue.bind(exchange)
            await queue.consume(self._on_message, no_ack=True)
        except LeaseLost:
            raise
        except BROKER_FAILURES as exc:
            raise BrokerUnavailable(
                f"roster {self.exchange!r}: {type(exc).__name__}: {exc}",
                host=self._holder.settings.host,
            ) from None
        self._channel = channel
        if self._announce:
            self._mark(self._me(), time.monotonic())
            self._tasks.append(
                asyncio.create_task(self._announce_loop(), name=f"roster:{self.exchange}")
            )
        self._tasks.append(asyncio.create_task(self._expire_loop(), name="roster-expiry"))

    async def leave(self) -> None:
        """Tell the others this member is gone now (not after the timeout), then stop."""
        self._leaving = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publish(self._me()), timeout=2.0)
        await self.close()

    async def close(self) -> None:
        """Stop announcing and listening (the others notice after the timeout)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await close_within(channel.close(), 2.0)

    # -- view ---------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """True once its channel is gone (closed, or RabbitMQ closed it): it hears nothing."""
        return self._channel is None or self._channel.is_closed

    @property
    def ids(self) -> tuple[str, ...]:
        """Live member ids, sorted (this one included while it announces)."""
        return self._ids

    def members(self) -> list[Member]:
        """The newest announcement of each live member, sorted by id."""
        return [self._heard[i][1] for i in self._ids]

    async def announce_now(self) -> None:
        """Send this member's announcement at once (its ``data`` changed)."""
        if self._announce and not self._leaving:
            self._mark(self._me(), time.monotonic())
            with contextlib.suppress(*BROKER_FAILURES, LeaseLost):
                await self._publish(self._me())

    async def wait_changed(self, timeout: float) -> bool:
        """Wait for a change of the member set (True) or for ``timeout`` (False)."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    # -- internals ----------------------------------------------------------------------------

    def _me(self) -> Member:
        return Member(
            id=self.member_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            incarnation=self._incarnation,
            leaving=self._leaving,
            data=self._describe(),
        )

    async def _publish(self, member: Member) -> None:
        channel = self._channel
        if channel is None or channel.is_closed:
            raise LeaseLost(f"roster {self.exchange!r} is closed")
        exchange = await channel.get_exchange(self.exchange, ensure=False)
        await exchange.publish(
            Message(
                _encode(member),
                delivery_mode=DeliveryMode.NOT_PERSISTENT,
                expiration=self._timeout,
                content_type="application/json",
            ),
            routing_key="",
        )

    async def _announce_loop(self) -> None:
        while True:
            try:
                await self._publish(self._me())
            except (LeaseLost, *BROKER_FAILURES) as exc:
                log.debug("roster.announce_failed", exchange=self.exchange, error=repr(exc))
            await asyncio.sleep(self._interval)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(min(self._interval, self._timeout / 4))
            self._refresh(time.monotonic())

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            member = _decode(message.body)
        except msgspec.DecodeError:
            log.warning("roster.bad_announcement", exchange=self.exchange)
            return
        now = time.monotonic()
        if member.id == self.member_id:
            if self._announce and not self._leaving:
                self._mark(self._me(), now)
            return
        if member.leaving:
            self._heard.pop(member.id, None)
            self.left.add(member.id)
        else:
            self._mark(member, now)
        self._refresh(now)

    def _mark(self, member: Member, now: float) -> None:
        self._heard[member.id] = (now, member)
        self._refresh(now)

    def _refresh(self, now: float) -> None:
        for member_id, (heard, _member) in list(self._heard.items()):
            if member_id != self.member_id and now - heard > self._timeout:
                del self._heard[member_id]
        ids = tuple(sorted(self._heard))
        if ids != self._ids:
            self._ids = ids
            self.changed_at = now
            self._changed.set()
