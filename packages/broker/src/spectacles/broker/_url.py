"""One AMQP URL, parsed once: where, as whom, and how (TLS, SASL, heartbeat, timeout, name).

Every connection the project opens (the lean publish connection and the aio-pika ones) reads its
URL here, so one ``AMQP_URL`` means the same thing everywhere. The query options are aiormq's
(``cafile``, ``capath``, ``certfile``, ``keyfile``, ``no_verify_ssl``, ``auth``, ``heartbeat``,
``name``) plus ``connection_timeout`` and ``server_hostname`` (SNI). Unlike aiormq, a URL is
checked whole when it is parsed (at start-up): an unknown option, a bad value or an unreadable
certificate is an :class:`AmqpUrlError` naming the setting, not a failed connection later. The
password never appears in ``repr``, ``str`` or an error.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias
from urllib.parse import parse_qsl, quote, unquote, urlsplit

__all__ = ["OPTIONS", "AmqpUrl", "AmqpUrlError", "redact_url"]

Auth = Literal["plain", "external"]
_Fail: TypeAlias = Callable[[str], "AmqpUrlError"]

#: The query options an AMQP URL may carry (anything else is a config error).
OPTIONS: Final = (
    "auth",
    "cafile",
    "capath",
    "certfile",
    "connection_timeout",
    "heartbeat",
    "keyfile",
    "name",
    "no_verify_ssl",
    "server_hostname",
)
_TLS_OPTIONS: Final = (
    "cafile",
    "capath",
    "certfile",
    "keyfile",
    "no_verify_ssl",
    "server_hostname",
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_MAX_HEARTBEAT: Final = 65535  # a short in connection.tune


class AmqpUrlError(ValueError):
    """An AMQP URL (or the URL list / order setting) is invalid; the text starts with ``key``."""

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
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


@dataclass(frozen=True, slots=True)
class AmqpUrl:
    """Where and as whom to connect, and with which transport options; immutable.

    ``heartbeat``, ``connection_timeout`` and ``name`` are None when the URL does not set them:
    the connection then uses its own default (the URL wins over code defaults).
    """

    scheme: Literal["amqp", "amqps"]
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    virtual_host: str = "/"
    auth: Auth = "plain"
    heartbeat: int | None = None
    connection_timeout: float | None = None
    name: str | None = None
    cafile: str | None = None
    capath: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    verify: bool = True
    server_hostname: str | None = None
    #: The URL as given, password redacted (what ``str`` shows).
    redacted: str = field(default="", compare=False)
    #: The setting the URL came from, named in errors.
    setting: str = field(default="AMQP_URL", compare=False, repr=False)

    @classmethod
    def parse(cls, url: str, *, key: str = "AMQP_URL", where: str = "") -> AmqpUrl:
        """Check ``url`` whole; certificates are loaded once to check them.

        :class:`AmqpUrlError` names ``key`` (and ``where``, e.g. "(URL 2 of 3)"), never the
        password.
        """
        return _parse(url.strip(), key, where)

    # -- derived --------------------------------------------------------------------------------

    @property
    def tls(self) -> bool:
        """Whether the connection is TLS (``amqps://``)."""
        return self.scheme == "amqps"

    @property
    def address(self) -> str:
        """``host:port`` (``[v6]:port`` for IPv6), never credentials: for logs and errors."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.redacted or f"{self.scheme}://{self.address}/"

    def sasl(self) -> tuple[str, str]:
        """``(mechanism, response)`` for connection.start-ok.

        PLAIN carries the URL's credentials; with EXTERNAL the broker takes the user from the
        client certificate.
        """
        if self.auth == "external":
            return "EXTERNAL", ""
        return "PLAIN", f"\0{self.username}\0{self.password}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A new TLS context for ``amqps://`` (None for ``amqp://``), built as aiormq builds it.

        Built per connection, so renewed certificate files are picked up on the next connect.
        """
        if not self.tls:
            return None
        try:
            return _build_context(self)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise AmqpUrlError(
                self.setting, f"{self.redacted!r}: cannot load the TLS files ({exc})"
            ) from None

    def aiormq_url(self) -> str:
        """The URL for aiormq/aio-pika, with credentials: only ever handed to the connection.

        It carries what aiormq reads from the URL (host, port, credentials, vhost, ``auth``,
        ``heartbeat``); TLS goes as an ``ssl_context``, the name and timeout as arguments.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = quote(self.username, safe="")
        password = quote(self.password, safe="")
        # aiormq turns %2F back into "/", every other escape is undone by yarl.
        vhost = quote(self.virtual_host, safe="")
        query = f"auth={self.auth}"
        if self.heartbeat is not None:
            query += f"&heartbeat={self.heartbeat}"
        return f"{self.scheme}://{user}:{password}@{host}:{self.port}/{vhost}?{query}"


def _build_context(url: AmqpUrl) -> ssl.SSLContext:
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=url.cafile, capath=url.capath
    )
    if url.certfile:
        # An encrypted key would make OpenSSL prompt on the terminal; fail instead.
        context.load_cert_chain(url.certfile, url.keyfile, password=_no_password)
    if not url.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _no_password() -> str:
    raise ValueError("the key file is encrypted; give an unencrypted key file")


@functools.lru_cache(maxsize=64)
def _parse(text: str, key: str, where: str) -> AmqpUrl:
    """Parse and check one URL (cached: settings re-read their URLs, and parsing loads certs)."""
    prefix = f"{where} " if where else ""

    def fail(problem: str) -> AmqpUrlError:
        return AmqpUrlError(key, f"{prefix}{redact_url(text)!r} {problem}")

    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:  # bad port, bad IPv6 brackets
        raise fail(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("amqp", "amqps") or not parts.hostname:
        raise fail("is not an AMQP URL; expected e.g. amqp://user:password@host:5672/vhost")
    if port == 0:
        raise fail("has port 0; give a port between 1 and 65535")
    options = _options(parts.query, fail)
    tls = scheme == "amqps"
    if not tls and (misplaced := [name for name in _TLS_OPTIONS if name in options]):
        raise fail(f"sets {', '.join(misplaced)}, which only apply to amqps:// URLs")
    path = parts.path
    url = AmqpUrl(
        scheme="amqps" if tls else "amqp",
        host=unquote(parts.hostname),
        port=port or (5671 if tls else 5672),
        username=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        virtual_host=unquote(path[1:]) if len(path) > 1 else "/",
        auth=_auth(options.get("auth"), fail),
        heartbeat=_heartbeat(options.get("heartbeat"), fail),
        connection_timeout=_timeout(options.get("connection_timeout"), fail),
        name=_nonempty("name", options.get("name"), fail),
        cafile=_file("cafile", options.get("cafile"), fail),
        capath=_directory("capath", options.get("capath"), fail),
        certfile=_file("certfile", options.get("certfile"), fail),
        keyfile=_file("keyfile", options.get("keyfile"), fail),
        verify=not _flag("no_verify_ssl", options.get("no_verify_ssl"), fail),
        server_hostname=_nonempty("server_hostname", options.get("server_hostname"), fail),
        redacted=redact_url(text),
        setting=key,
    )
    if url.keyfile and not url.certfile:
        raise fail("sets keyfile without certfile; give the client certificate too")
    if url.auth == "external" and not (tls and url.certfile):
        raise fail("sets auth=external, which needs amqps:// and a client certificate (certfile)")
    if tls:
        try:
            _build_context(url)
        except (OSError, ValueError) as exc:
            raise fail(f"has TLS files that cannot be loaded ({exc})") from None
    return url


def _options(query: str, fail: _Fail) -> dict[str, str]:
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise fail("has a malformed query; expected ?option=value&option=value") from None
    for name, value in pairs:
        if name not in OPTIONS:
            raise fail(f"has the unknown option {name!r}; known: {', '.join(OPTIONS)}")
        if name in options:
            raise fail(f"sets {name} twice")
        options[name] = value
    return options


def _auth(value: str | None, fail: _Fail) -> Auth:
    text = (value or "plain").lower()
    if text == "plain":
        return "plain"
    if text == "external":
        return "external"
    raise fail(f"has auth={value!r}; use auth=plain or auth=external")


def _heartbeat(value: str | None, fail: _Fail) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) > _MAX_HEARTBEAT:
        raise fail(f"has heartbeat={value!r}; give whole seconds, 0 to {_MAX_HEARTBEAT} (0: off)")
    return int(value)


def _timeout(value: str | None, fail: _Fail) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise fail(f"has connection_timeout={value!r}; give seconds > 0, e.g. 10 or 2.5")
    return seconds


def _flag(name: str, value: str | None, fail: _Fail) -> bool:
    if value is None:
        return False
    text = value.lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise fail(f"has {name}={value!r}; use 1 or 0 (true/false, yes/no)")


def _nonempty(name: str, value: str | None, fail: _Fail) -> str | None:
    if value is not None and not value.strip():
        raise fail(f"has an empty {name}")
    return value


def _file(name: str, value: str | None, fail: _Fail) -> str | None:
    if _nonempty(name, value, fail) is not None and not os.path.isfile(value or ""):
        raise fail(f"has {name}={value!r}, which is not a readable file")
    return value


def _directory(name: str, value: str | None, fail: _Fail) -> str | None:
    if _nonempty(name, value, fail) is not None and not os.path.isdir(value or ""):
        raise fail(f"has {name}={value!r}, which is not a directory")
    return value
