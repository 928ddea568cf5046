"""Connection settings for RabbitMQ, read from the environment once in an entry point."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["DEFAULT_AMQP_URL", "DEFAULT_GROUP", "BrokerSettings", "redact_url"]

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_GROUP = "gateway"

# A group becomes an exchange name and the prefix of every queue name, so keep it to characters
# that are safe in both and in shell commands/dashboards.
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to log or put in an error."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where RabbitMQ is and which group (events exchange / queue prefix) this service uses."""

    amqp_url: str = DEFAULT_AMQP_URL
    group: str = DEFAULT_GROUP

    def __post_init__(self) -> None:
        parts = urlsplit(self.amqp_url)
        if parts.scheme not in {"amqp", "amqps"} or not parts.hostname:
            raise ValueError(
                f"AMQP_URL {redact_url(self.amqp_url)!r} is not an AMQP URL; "
                "expected e.g. amqp://user:password@host:5672/vhost"
            )
        if not _GROUP_RE.match(self.group):
            raise ValueError(
                f"BROKER_GROUP {self.group!r} is invalid; use letters, digits and . _ : - "
                "(it names the events exchange and prefixes every queue)"
            )

    @property
    def host(self) -> str:
        """``host:port`` of the broker, for messages (never includes credentials)."""
        parts = urlsplit(self.amqp_url)
        default_port = 5671 if parts.scheme == "amqps" else 5672
        return f"{parts.hostname}:{parts.port or default_port}"

    @property
    def password(self) -> str | None:
        """The password in the URL (for scrubbing it out of error texts; never log it)."""
        return urlsplit(self.amqp_url).password

    @property
    def safe_url(self) -> str:
        """The URL with the password redacted."""
        return redact_url(self.amqp_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BrokerSettings:
        """Read ``AMQP_URL`` and ``BROKER_GROUP`` (empty values mean the defaults)."""
        env = os.environ if environ is None else environ
        return cls(
            amqp_url=env.get("AMQP_URL") or DEFAULT_AMQP_URL,
            group=env.get("BROKER_GROUP") or DEFAULT_GROUP,
        )

    def __repr__(self) -> str:
        return f"BrokerSettings(amqp_url={self.safe_url!r}, group={self.group!r})"
