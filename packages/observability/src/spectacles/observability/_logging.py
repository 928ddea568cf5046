"""structlog set-up shared by every service, with secret redaction.

Secrets are registered at start-up (a token, a password from a URL); a processor then scrubs every
log line, so a token can never leak through an exception message or a logged URL.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

from spectacles.settings import SettingsReader, choice, validate

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "REDACTED",
    "configure_logging",
    "get_logger",
    "redact",
    "register_secret",
]

REDACTED = "[REDACTED]"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("auto", "json", "console")
_LEVEL: Final = choice(*LOG_LEVELS)
_FORMAT: Final = choice(*LOG_FORMATS)

_SECRET_KEYS = frozenset({"token", "password", "authorization", "secret", "amqp_password"})
# Userinfo of URLs (amqp://user:password@host) — the password part is replaced.
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)@", re.IGNORECASE
)
_BOT_HEADER = re.compile(r"\b(Bot|Bearer)\s+[A-Za-z0-9._\-]{20,}")
_MIN_SECRET_LENGTH = 8
_secrets: set[str] = set()
# Longest first: a secret that contains another (a token and a test's "secret-token") must go
# whole, not with only the shorter one's part replaced and the rest of it left in the line.
_secrets_longest_first: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Scrub ``value`` from every log line from now on.

    Values under 8 characters are ignored: replacing a short common word everywhere would wreck
    log lines, and URL passwords are scrubbed by pattern whatever their length.
    """
    global _secrets_longest_first
    if value and len(value) >= _MIN_SECRET_LENGTH and value not in _secrets:
        _secrets.add(value)
        _secrets_longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    """Return ``text`` with registered secrets, URL passwords and auth headers replaced."""
    for secret in _secrets_longest_first:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    if "Bot " in text or "Bearer " in text:
        text = _BOT_HEADER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if key.lower() in _SECRET_KEYS and value:
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value("", v) for v in value)
    if isinstance(value, BaseException):
        return redact(repr(value))
    return value


def _redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value)
    return event_dict


def _redact_rendered(_logger: Any, _method: str, rendered: Any) -> Any:
    # Last line of defence: tracebacks are rendered after the per-key pass.
    return redact(rendered) if isinstance(rendered, str) else rendered


def configure_logging(
    level: str | None = None, fmt: str | None = None, *, service: str = "spectacles"
) -> None:
    """Route structlog and stdlib logging to stderr: JSON for machines, console for people.

    JSON is chosen when ``fmt`` (or ``LOG_FORMAT``) is ``json`` or stderr is not a terminal,
    which is what containers and log shippers want; ``console`` forces the human format.
    """
    env = SettingsReader(os.environ)
    level_name = env.var("LOG_LEVEL", _LEVEL, "INFO") if level is None else level
    numeric: int = logging.getLevelName(validate("LOG_LEVEL", _LEVEL, level_name))
    fmt = env.var("LOG_FORMAT", _FORMAT, "") if fmt is None else fmt
    fmt = validate("LOG_FORMAT", _FORMAT, fmt) if fmt else ""
    if fmt == "auto":  # the gateway's documented spelling of "decide by the terminal"
        fmt = ""
    as_json = fmt == "json" or (fmt == "" and not sys.stderr.isatty())

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if as_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    shared.append(_redact_processor)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
            _redact_rendered,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Libraries are chatty at DEBUG; keep them at WARNING unless asked for explicitly.
    libraries = ("aiormq", "aio_pika", "aiohttp.access", "aiohttp.client", "aiohttp.websocket")
    for noisy in (*libraries, "asyncio"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A logger bound to ``initial`` context."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**initial) if initial else logger
