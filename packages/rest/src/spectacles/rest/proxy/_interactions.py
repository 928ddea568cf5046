"""Hand a worker's interaction answer to the HTTP ingress still holding Discord's request.

With HTTP interactions, Discord waits for the answer in the HTTP response of its own request,
which the ingress holds. Workers do not know that: they answer with the usual REST callback.
The proxy, which sees every callback, first offers it to the ingress through RabbitMQ: a
``mandatory`` publish to ``{group}.interactions`` with the interaction id as routing key. An
ingress waiting for that interaction has bound its queue with that key; it replies
``{"taken": true}`` and answers Discord with the body. Unroutable (nobody waiting), a
``{"taken": false}`` reply (the ingress already deferred), no reply in time or no RabbitMQ:
the callback goes to Discord as it would without an ingress. Workers get Discord's own answer
to a callback either way (204 when taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import uuid
from collections.abc import Mapping
from typing import Final

import aio_pika
import aiormq
import msgspec
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aiohttp import web
from prometheus_client import Counter
from yarl import URL

from spectacles.observability import get_logger, register_secret
from spectacles.settings import SettingError, SettingsReader, choice, string

__all__ = [
    "INTERACTIONS_EXCHANGE_SUFFIX",
    "REPLY_TO",
    "TOKEN_HEADER",
    "IngressOffer",
    "OfferReply",
    "interactions_exchange",
    "offer_from_env",
]

_log = get_logger("spectacles.rest.proxy.interactions")

#: ``{group}.interactions``: direct, durable; the ingress binds one key per waiting interaction.
INTERACTIONS_EXCHANGE_SUFFIX: Final = ".interactions"
#: The interaction token of the callback path: the ingress takes only the matching answer.
TOKEN_HEADER: Final = "interaction_token"
REPLY_TO: Final = "amq.rabbitmq.reply-to"
_CALLBACK: Final = re.compile(r"^/interactions/(\d{1,20})/([^/]+)/callback$")

_OFFERS = Counter(
    "spectacles_rest_proxy_interaction_offers_total",
    "Interaction callbacks offered to an HTTP ingress, by outcome.",
    ["outcome"],
)


class OfferReply(msgspec.Struct):
    """The ingress's reply: whether its HTTP answer to Discord carries this body."""

    taken: bool


def interactions_exchange(group: str) -> str:
    """The exchange of interaction answers for a broker group."""
    return group + INTERACTIONS_EXCHANGE_SUFFIX


def offer_from_env(env: Mapping[str, str] | None = None) -> IngressOffer | None:
    """``AMQP_URL`` set: offer interaction callbacks to an ingress (``BROKER_GROUP``'s)."""
    read = SettingsReader(os.environ if env is None else env)
    url = read.var("AMQP_URL", string(), "")
    if not url:
        return None
    # Several comma-separated URLs (a cluster's nodes) are tried in turn, shuffled unless
    # AMQP_URL_ORDER=in-order (spectacles.broker._endpoints validates the same settings for every
    # other service; this package cannot import spectacles.broker, which depends on it).
    for position, item in enumerate(url.split(","), 1):
        if not item.strip().startswith(("amqp://", "amqps://")):
            raise SettingError("AMQP_URL", f"URL {position} must be an amqp:// or amqps:// URL")
    group = read.var("BROKER_GROUP", string(), "gateway")
    order = read.var("AMQP_URL_ORDER", choice("shuffle", "in-order"), "shuffle")
    return IngressOffer(url, group, shuffle=order == "shuffle")


class IngressOffer:
    """Offers interaction callbacks to a waiting ingress before they go upstream."""

    def __init__(
        self,
        amqp_url: str,
        group: str,
        *,
        timeout: float = 1.0,
        connection_name: str | None = None,
        shuffle: bool = True,
    ) -> None:
        self._amqp_urls = [item.strip() for item in amqp_url.split(",") if item.strip()]
        self._shuffle = shuffle
        self.connection_name = connection_name or f"rest-proxy-{os.getpid()}"
        self.exchange_name = interactions_exchange(group)
        self._timeout = timeout
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._connect_task: asyncio.Task[None] | None = None
        for url in self._amqp_urls:
            register_secret(URL(url).password)

    @property
    def ready(self) -> bool:
        """Whether offers can be made now (else callbacks simply go upstream)."""
        return (
            self._exchange is not None
            and self._channel is not None
            and (not self._channel.is_closed)
        )

    async def start(self) -> None:
        """Connect in the background: the proxy serves (forwarding everything) meanwhile."""
        self._connect_task = asyncio.create_task(self._connect(), name="interactions-offer")

    async def stop(self) -> None:
        """Close the RabbitMQ connection; pending offers resolve as "not taken"."""
        task, self._connect_task = self._connect_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5.0)

    async def _connect(self) -> None:
        """Keep one connection with a confirm channel consuming direct reply-to, forever."""
        delay = 0.5
        while True:
            connection: AbstractConnection | None = None
            try:
                connection = await self._connect_any()
                self._connection = connection
                lost = asyncio.Event()
                connection.close_callbacks.add(lambda *_, lost=lost: lost.set())
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.DIRECT, durable=True
                )
                underlay = await channel.get_underlay_channel()
                await underlay.basic_consume(REPLY_TO, self._on_reply, no_ack=True)
                self._channel, self._exchange = channel, exchange
                _log.info("rest_proxy.interactions_offer_ready", exchange=self.exchange_name)
                delay = 0.5
                await lost.wait()  # a remote close does not resolve connection.closed()
                _log.warning("rest_proxy.interactions_broker_lost")
            except (OSError, ConnectionError, aiormq.exceptions.AMQPError) as exc:
                _log.warning("rest_proxy.interactions_broker_unreachable", error=repr(exc))
            finally:
                self._channel = self._exchange = None
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("RabbitMQ connection lost"))
                if connection is not None and not connection.is_closed:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 5.0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)

    async def _connect_any(self) -> AbstractConnection:
        """The first node that answers (each in turn, shuffled unless in-order)."""
        urls = list(self._amqp_urls)
        if self._shuffle:
            random.shuffle(urls)
        for url in urls[:-1]:
            try:
                return await aio_pika.connect(
                    url, client_properties={"connection_name": self.connection_name}
                )
            except (OSError, ConnectionError, aiormq.exceptions.AMQPError) as exc:
                _log.warning("rest_proxy.interactions_node_unreachable", error=repr(exc))
        return await aio_pika.connect(
            urls[-1], client_properties={"connection_name": self.connection_name}
        )

    async def _on_reply(self, message: aiormq.abc.DeliveredMessage) -> None:
        future = self._pending.get(message.header.properties.correlation_id or "")
        if future is not None and not future.done():
            future.set_result(bytes(message.body))

    async def offer(
        self, method: str, api_path: str, headers: Mapping[str, str], body: bytes
    ) -> web.Response | None:
        """The answer to give the worker if an ingress took the callback, else None."""
        match = _CALLBACK.match(api_path) if method == "POST" else None
        if match is None or not body:
            return None
        if not headers.get("Content-Type", "").startswith("application/json"):
            return None  # attachments (multipart) cannot ride an HTTP interaction answer
        exchange = self._exchange
        if exchange is None or not self.ready:
            _OFFERS.labels("no_broker").inc()
            return None
        interaction_id, token = match.groups()
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            async with asyncio.timeout(self._timeout):
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        content_type="application/json",
                        headers={TOKEN_HEADER: token},
                        correlation_id=correlation_id,
                        reply_to=REPLY_TO,
                        expiration=self._timeout,
                        delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                    ),
                    routing_key=interaction_id,
                    mandatory=True,
                )
                reply = msgspec.json.decode(await future, type=OfferReply)
        except aiormq.exceptions.PublishError:
            _OFFERS.labels("no_ingress").inc()  # unroutable: no ingress waits for it
            return None
        except (
            TimeoutError,
            ConnectionError,
            msgspec.DecodeError,
            aiormq.exceptions.AMQPError,
        ) as exc:
            _OFFERS.labels("failed").inc()
            _log.warning("rest_proxy.interaction_offer_failed", error=repr(exc))
            return None
        finally:
            self._pending.pop(correlation_id, None)
        if not reply.taken:
            _OFFERS.labels("too_late").inc()
            return None
        _OFFERS.labels("taken").inc()
        return web.Response(status=204)  # what Discord answers a callback
