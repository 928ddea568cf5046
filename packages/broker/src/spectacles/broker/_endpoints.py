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
from urllib.parse import urlsplit

from spectacles.observability import get_logger

from .errors import BrokerUnavailable

__all__ = [
    "ORDERS",
    "AmqpEndpoints",
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


class AmqpUrlError(ValueError):
    """A URL list or order setting is invalid; the text starts with ``key`` (the setting)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to log or put in an error."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def address_of(url: str) -> str:
    """``host:port`` of an AMQP URL (never credentials), for logs and errors."""
    parts = urlsplit(url)
    default_port = 5671 if parts.scheme == "amqps" else 5672
    return f"{parts.hostname}:{parts.port or default_port}"


def _check_url(key: str, url: str, position: int, count: int) -> str:
    where = f"(URL {position} of {count})" if count > 1 else ""
    text = url.strip()
    if not text:
        raise AmqpUrlError(key, f"{where} is empty; remove the stray comma".lstrip())
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise AmqpUrlError(
            key, f"{where} {redact_url(text)!r} is not a valid URL ({exc})".lstrip()
        ) from None
    if parts.scheme not in {"amqp", "amqps"} or not parts.hostname:
        raise AmqpUrlError(
            key,
            f"{where} {redact_url(text)!r} is not an AMQP URL; "
            "expected e.g. amqp://user:password@host:5672/vhost".lstrip(),
        )
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
        return cls(parse_urls(value, key=key), parse_order(order, key=order_key))

    @property
    def addresses(self) -> str:
        """``host:port[,host:port...]``, for messages (never credentials)."""
        return ",".join(address_of(url) for url in self.urls)

    @property
    def passwords(self) -> tuple[str, ...]:
        """Every password in the URLs (to scrub them from logs; never log them)."""
        found = (urlsplit(url).password for url in self.urls)
        return tuple(dict.fromkeys(p for p in found if p))

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
