"""Which RabbitMQ node to connect to: one AMQP URL, or several (the nodes of a cluster).

Every connection the project opens (the gateway's publisher and control connection, workers, RPC,
the dead-letter CLI) parses its URLs here and connects through :func:`connect_first`, so a node
that is down costs one failed attempt and the next node is tried at once. ``shuffle`` (default)
spreads the clients of a deployment over the nodes; ``in-order`` prefers the first URL (e.g. the
node nearest to the client) and falls back to the next ones.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from spectacles.observability import get_logger

from ._url import AmqpUrl, AmqpUrlError, redact_url
from .errors import BrokerUnavailable

__all__ = [
    "ORDERS",
    "AmqpEndpoints",
    "AmqpUrl",
    "AmqpUrlError",
    "UrlOrder",
    "address_of",
    "connect_first",
    "redact_url",
]

log = get_logger(__name__)

UrlOrder = Literal["shuffle", "in-order"]
ORDERS: Final[tuple[UrlOrder, ...]] = ("shuffle", "in-order")

_T = TypeVar("_T")


def address_of(url: str) -> str:
    """``host:port`` of an AMQP URL (never credentials), for logs and errors."""
    return AmqpUrl.parse(url).address


def _check_url(key: str, url: str, position: int, count: int) -> str:
    where = f"(URL {position} of {count})" if count > 1 else ""
    text = url.strip()
    if not text:
        raise AmqpUrlError(key, f"{where} is empty; remove the stray comma".lstrip())
    AmqpUrl.parse(text, key=key, where=where)
    return text


def parse_urls(value: str | Sequence[str], *, key: str = "AMQP_URL") -> tuple[str, ...]:
    """The URLs of ``value``, a comma-separated string or a list.

    ``AmqpUrlError`` names ``key`` and the position of the first bad URL (password redacted).
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    if not items:
        raise AmqpUrlError(key, "lists no URL; give at least one amqp://host:5672/ URL")
    urls = tuple(_check_url(key, item, i, len(items)) for i, item in enumerate(items, 1))
    return tuple(dict.fromkeys(urls))  # the same node twice would only cost a second attempt


def parse_order(value: str, *, key: str = "AMQP_URL_ORDER") -> UrlOrder:
    """``shuffle`` or ``in-order`` (case-insensitive; empty means shuffle)."""
    text = value.strip().lower() or "shuffle"
    for order in ORDERS:
        if text == order:
            return order
    raise AmqpUrlError(key, f"{value!r} must be one of {', '.join(ORDERS)}")


@dataclass(frozen=True, slots=True)
class AmqpEndpoints:
    """The broker nodes a client may use, and in which order it tries them."""

    urls: tuple[str, ...]
    order: UrlOrder = "shuffle"
    key: str = "AMQP_URL"

    @classmethod
    def parse(
        cls,
        value: str | Sequence[str],
        order: str = "shuffle",
        *,
        key: str = "AMQP_URL",
        order_key: str = "AMQP_URL_ORDER",
    ) -> AmqpEndpoints:
        """Validate ``value`` and ``order`` (errors name ``key`` / ``order_key``)."""
        return cls(parse_urls(value, key=key), parse_order(order, key=order_key), key)

    def node(self, url: str) -> AmqpUrl:
        """The parsed form of one of :attr:`urls` (parsed and checked once, then cached)."""
        return AmqpUrl.parse(url, key=self.key)

    @property
    def addresses(self) -> str:
        """``host:port[,host:port...]``, for messages (never credentials)."""
        return ",".join(self.node(url).address for url in self.urls)

    @property
    def passwords(self) -> tuple[str, ...]:
        """Every password in the URLs (to scrub them from logs; never log them)."""
        found: list[str] = []
        for url in self.urls:
            raw = urlsplit(url).password  # as written (escaped), and as sent (unescaped)
            if raw:
                found += [raw, unquote(raw)]
        return tuple(dict.fromkeys(found))

    def attempt_order(self, *, last_lost: str | None = None) -> list[str]:
        """The URLs for one round of attempts; the node just lost goes last (it is likely down)."""
        urls = list(self.urls)
        if self.order == "shuffle":
            random.shuffle(urls)
        if last_lost in urls and len(urls) > 1:
            urls.remove(last_lost)
            urls.append(last_lost)
        return urls


async def connect_first(
    endpoints: AmqpEndpoints,
    open_one: Callable[[str], Awaitable[_T]],
    *,
    last_lost: str | None = None,
) -> tuple[str, _T]:
    """Open a connection to the first node that answers: ``(url, connection)``.

    With one URL its error propagates unchanged. With several, each failure is logged and the next
    node tried; when none answers, ``BrokerUnavailable`` lists every node and why it failed.
    """
    urls = endpoints.attempt_order(last_lost=last_lost)
    if len(urls) == 1:
        return urls[0], await open_one(urls[0])
    failures: list[str] = []
    for url in urls:
        try:
            return url, await open_one(url)
        except Exception as exc:  # any failure of one node: try the next one
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            for password in endpoints.passwords:
                reason = reason.replace(password, "***")
            failures.append(f"{address_of(url)} ({reason})")
            log.warning("broker.node_unreachable", node=address_of(url), error=reason)
    raise BrokerUnavailable(
        f"no RabbitMQ node answered: {'; '.join(failures)}", host=endpoints.addresses
    )
