"""Interactions waiting for a worker's answer, reachable through RabbitMQ by their id.

The ingress owns one exclusive queue bound to ``{group}.interactions`` (a broker ``RpcInbox``);
while an interaction waits, the queue is bound with its id as routing key, so the REST proxy's
offer of the worker's callback reaches this process (and only this one). Unbound again once
answered or given up, an offer for it is unroutable and the proxy sends it to Discord instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from spectacles.broker import Broker
from spectacles.broker.errors import BrokerError
from spectacles.broker.rpc_inbox import RpcInbox
from spectacles.observability import get_logger
from spectacles.rest.proxy import TOKEN_HEADER, OfferReply, interactions_exchange

__all__ = ["PendingAnswers"]

_log = get_logger("spectacles.interactions.pending")
_TAKEN: Final = msgspec.json.encode(OfferReply(taken=True))
_NOT_TAKEN: Final = msgspec.json.encode(OfferReply(taken=False))


class _Waiter:
    __slots__ = ("future", "token")

    def __init__(self, token: str) -> None:
        self.token = token
        self.future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()


class PendingAnswers:
    """``expect`` an interaction's answer, ``wait`` for it, ``forget`` it."""

    def __init__(self, broker: Broker) -> None:
        self.exchange = interactions_exchange(broker.settings.group)
        self.queue_name = f"{self.exchange}.ingress.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._waiters: dict[str, _Waiter] = {}
        self._inbox = RpcInbox(
            broker, exchange=self.exchange, queue=self.queue_name, handler=self._on_offer
        )

    @property
    def ready(self) -> bool:
        """Whether answers can reach this process now."""
        return self._inbox.ready

    async def start(self) -> None:
        """Declare the exchange and this process's queue, and consume offers."""
        await self._inbox.start()

    async def stop(self) -> None:
        """Stop consuming; the exclusive queue goes away with the channel."""
        await self._inbox.stop()

    async def expect(self, interaction_id: str, token: str) -> asyncio.Future[bytes]:
        """Route offers for ``interaction_id`` here (before the event is published)."""
        waiter = self._waiters[interaction_id] = _Waiter(token)
        try:
            await self._inbox.bind(interaction_id)
        except BaseException:
            self._waiters.pop(interaction_id, None)
            raise
        return waiter.future

    async def forget(self, interaction_id: str) -> None:
        """Stop waiting: from now on an offer is answered "not taken" (then unroutable)."""
        self._waiters.pop(interaction_id, None)
        with contextlib.suppress(BrokerError):
            await self._inbox.unbind(interaction_id)

    async def _on_offer(
        self, interaction_id: str, body: bytes, headers: Mapping[str, Any]
    ) -> bytes:
        waiter = self._waiters.get(interaction_id)
        token = headers.get(TOKEN_HEADER)
        if isinstance(token, bytes):
            token = token.decode()
        if waiter is None or token != waiter.token or waiter.future.done():
            _log.debug("interactions.offer_not_taken", interaction_id=interaction_id)
            return _NOT_TAKEN
        waiter.future.set_result(body)
        self._waiters.pop(interaction_id, None)
        return _TAKEN
