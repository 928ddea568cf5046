"""Connection settings for RabbitMQ, read from the environment once in an entry point.

``AMQP_URL`` may list several comma-separated URLs (the nodes of a cluster); ``AMQP_URL_ORDER``
says whether clients try them shuffled (default) or in order. See ``_endpoints``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from spectacles.settings import SettingError, SettingsReader, string

from ._endpoints import ORDERS, AmqpEndpoints, AmqpUrlError, redact_url

__all__ = [
    "DEFAULT_AMQP_URL",
    "DEFAULT_GROUP",
    "ORDERS",
    "AmqpEndpoints",
    "AmqpUrlError",
    "BrokerSettings",
    "redact_url",
]

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_GROUP = "gateway"

# A group becomes an exchange name and the prefix of every queue name, so keep it to characters
# that are safe in both and in shell commands/dashboards.
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where RabbitMQ is and which group (events exchange / queue prefix) this service uses."""

    amqp_url: str = DEFAULT_AMQP_URL  # one URL, or several separated by commas
    group: str = DEFAULT_GROUP
    url_order: str = "shuffle"  # "shuffle" or "in-order": how clients pick among the URLs

    def __post_init__(self) -> None:
        self.endpoints  # noqa: B018 - raises AmqpUrlError naming AMQP_URL(_ORDER) and the position
        if not _GROUP_RE.match(self.group):
            raise SettingError(
                "BROKER_GROUP",
                f"{self.group!r} is invalid; use letters, digits and . _ : - "
                "(it names the events exchange and prefixes every queue)",
            )

    @property
    def endpoints(self) -> AmqpEndpoints:
        """The broker nodes and the order to try them in."""
        return AmqpEndpoints.parse(self.amqp_url, self.url_order)

    @property
    def host(self) -> str:
        """``host:port[,host:port...]`` of the broker node(s), for messages (no credentials)."""
        return self.endpoints.addresses

    @property
    def password(self) -> str | None:
        """The (first) password in the URLs (for scrubbing error texts; never log it)."""
        passwords = self.endpoints.passwords
        return passwords[0] if passwords else None

    @property
    def passwords(self) -> tuple[str, ...]:
        """Every password in the URLs (to register as secrets; never log them)."""
        return self.endpoints.passwords

    @property
    def safe_url(self) -> str:
        """The URL(s) with the passwords redacted."""
        return ",".join(redact_url(url) for url in self.endpoints.urls)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BrokerSettings:
        """Read ``AMQP_URL``, ``AMQP_URL_ORDER``, ``BROKER_GROUP`` (empty means the default)."""
        env = SettingsReader(os.environ if environ is None else environ)
        return cls(
            amqp_url=env.var("AMQP_URL", string(), DEFAULT_AMQP_URL),
            group=env.var("BROKER_GROUP", string(), DEFAULT_GROUP),
            url_order=env.var("AMQP_URL_ORDER", string(), "shuffle"),
        )

    def __repr__(self) -> str:
        return (
            f"BrokerSettings(amqp_url={self.safe_url!r}, group={self.group!r}, "
            f"url_order={self.url_order!r})"
        )
