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

RabbitMQ is ``spectacles.broker``'s: the offer is an ``RpcClient`` call (direct reply-to), the
ingress an ``RpcInbox``; node choice, reconnects and error translation are the broker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping
from typing import Final

import msgspec
from aiohttp import web
from prometheus_client import Counter

from spectacles.broker import Backoff, Broker, BrokerSettings, RpcClient
from spectacles.broker.errors import BrokerError, BrokerUnavailable, PublishReturned
from spectacles.broker.rpc_inbox import declare_inbox_exchange
from spectacles.broker.settings import AmqpUrlError
from spectacles.observability import get_logger
from spectacles.settings import SettingError, SettingsReader, string

__all__ = [
    "INTERACTIONS_EXCHANGE_SUFFIX",
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
    """``AMQP_URL`` set: offer interaction callbacks to an ingress (``BROKER_GROUP``'s).

    ``AMQP_URL`` (one URL or a cluster's comma-separated nodes), ``AMQP_URL_ORDER`` and
    ``BROKER_GROUP`` are read as every other service reads them (``BrokerSettings``); a bad value
    raises ``SettingError`` naming the variable.
    """
    env = os.environ if env is None else env
    if not SettingsReader(env).var("AMQP_URL", string(), ""):
        return None
    try:
        return IngressOffer.from_settings(BrokerSettings.from_env(env))
    except AmqpUrlError as exc:
        raise SettingError(exc.key, exc.problem) from None


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
        self.settings = BrokerSettings(
            amqp_url=amqp_url, group=group, url_order="shuffle" if shuffle else "in-order"
        )
        self.connection_name = connection_name or f"rest-proxy-{os.getpid()}"
        self.exchange_name = interactions_exchange(group)
        self._timeout = timeout
        self._broker: Broker | None = None
        self._rpc: RpcClient | None = None
        self._declared = False  # the exchange, on the current connection
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: BrokerSettings, *, timeout: float = 1.0) -> IngressOffer:
        """An offer to the ingresses of ``settings.group``, through ``settings``' nodes."""
        return cls(
            settings.amqp_url,
            settings.group,
            timeout=timeout,
            shuffle=settings.url_order != "in-order",
        )

    @property
    def ready(self) -> bool:
        """Whether offers can be made now (else callbacks simply go upstream)."""
        broker = self._broker
        return broker is not None and broker.is_connected and self._declared

    async def start(self) -> None:
        """Connect in the background: the proxy serves (forwarding everything) meanwhile."""
        self._task = asyncio.create_task(self._run(), name="interactions-offer")

    async def stop(self) -> None:
        """Close the RabbitMQ connection; offers in flight fail, so their callbacks go upstream."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        rpc, broker, self._rpc, self._broker = self._rpc, self._broker, None, None
        self._declared = False
        if rpc is not None:
            await rpc.close()
        if broker is not None:
            await broker.close()

    async def _run(self) -> None:
        """Connect (retrying until RabbitMQ answers), then declare the exchange on each connection.

        The broker reconnects by itself; after each drop the exchange is declared again, so the
        proxy never publishes to an exchange nobody declared.
        """
        backoff = Backoff(0.5, 15.0)
        while True:
            try:
                broker = await Broker.connect(
                    self.settings, connection_name=self.connection_name, reconnect_delay=0.5
                )
                break
            except BrokerUnavailable as exc:
                _log.warning("rest_proxy.interactions_broker_unreachable", error=str(exc))
            await backoff.sleep()
        self._broker, self._rpc = broker, RpcClient(broker)
        broker.on_connection_lost(self._on_connection_lost)
        backoff.reset()
        while True:
            try:
                await declare_inbox_exchange(broker, self.exchange_name)
            except BrokerError as exc:
                _log.warning("rest_proxy.interactions_declare_failed", error=str(exc))
                await backoff.sleep()
                continue
            self._declared = True
            backoff.reset()
            _log.info("rest_proxy.interactions_offer_ready", exchange=self.exchange_name)
            await self._lost.wait()
            self._lost.clear()

    def _on_connection_lost(self) -> None:
        self._declared = False
        self._lost.set()
        _log.warning("rest_proxy.interactions_broker_lost")

    async def offer(
        self, method: str, api_path: str, headers: Mapping[str, str], body: bytes
    ) -> web.Response | None:
        """The answer to give the worker if an ingress took the callback, else None."""
        match = _CALLBACK.match(api_path) if method == "POST" else None
        if match is None or not body:
            return None
        if not headers.get("Content-Type", "").startswith("application/json"):
            return None  # attachments (multipart) cannot ride an HTTP interaction answer
        rpc = self._rpc
        if rpc is None or not self.ready:
            _OFFERS.labels("no_broker").inc()
            return None
        interaction_id, token = match.groups()
        try:
            answer = await rpc.call(
                interaction_id,
                body,
                exchange=self.exchange_name,
                timeout=self._timeout,
                headers={TOKEN_HEADER: token},
            )
            reply = msgspec.json.decode(answer, type=OfferReply)
        except PublishReturned:
            _OFFERS.labels("no_ingress").inc()  # unroutable: no ingress waits for it
            return None
        except Exception as exc:  # any failure of the offer: the callback goes to Discord
            _OFFERS.labels("failed").inc()
            _log.warning("rest_proxy.interaction_offer_failed", error=repr(exc))
            return None
        if not reply.taken:
            _OFFERS.labels("too_late").inc()
            return None
        _OFFERS.labels("taken").inc()
        return web.Response(status=204)  # what Discord answers a callback
