"""Proxy settings, read from the environment once, in the entry point."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from spectacles.observability import parse_address

from .._http import API_URL_ENV, DEFAULT_API_URL, PROXY_AUTH_ENV, resolve_base_url

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_PROXY_ADDRESS", "ProxySettings"]

#: Loopback when run bare: only this host reaches it. Compose sets ``0.0.0.0:8081``, which in a
#: container is the Compose network (the published host port stays 127.0.0.1-only).
DEFAULT_PROXY_ADDRESS: Final = "127.0.0.1:8081"
#: Discord's own upload limit for most bots; a bigger body is refused (413) before upstream.
DEFAULT_MAX_BODY_BYTES: Final = 25 * 1024 * 1024
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("", "0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """How the proxy listens, where it forwards, and its limits.

    ``token`` (``DISCORD_TOKEN``) is optional: when set, requests arriving without an
    ``Authorization`` header are sent with ``Bot <token>``, so workers need no token at all,
    and requests with any other token are refused (401). Without it, ``max_tokens`` bounds how
    many distinct tokens get a limiter: each costs memory and a log-redaction pattern.

    ``auth`` (``REST_PROXY_AUTH``), when set, is a shared secret every ``/api`` request must
    carry in ``X-Spectacles-Proxy-Auth``, in both modes; others get 401 from the proxy itself
    (never forwarded, never counted by the invalid-request guard). Injecting ``token``
    without ``auth`` would answer as the bot to anyone who can reach the port, so it is refused
    unless ``allow_anonymous`` (``REST_PROXY_ALLOW_ANONYMOUS=1``) says so explicitly.
    """

    address: str = DEFAULT_PROXY_ADDRESS
    upstream: str = DEFAULT_API_URL
    token: str | None = field(default=None, repr=False)
    auth: str | None = field(default=None, repr=False)
    allow_anonymous: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    global_limit: int = 50
    max_retries: int = 3
    invalid_request_threshold: int = 9_000
    request_timeout: float = 30.0
    max_tokens: int = 8

    def __post_init__(self) -> None:
        parse_address(self.address)  # raises a ValueError naming the expected form
        object.__setattr__(self, "upstream", resolve_base_url(self.upstream))
        if self.global_limit < 1:
            raise ValueError(f"REST_PROXY_GLOBAL_LIMIT must be >= 1, got {self.global_limit}")
        if self.max_retries < 0:
            raise ValueError(f"REST_PROXY_MAX_RETRIES must be >= 0, got {self.max_retries}")
        if self.invalid_request_threshold < 1:
            raise ValueError(
                "REST_PROXY_INVALID_REQUEST_THRESHOLD must be >= 1, "
                f"got {self.invalid_request_threshold}"
            )
        if self.max_tokens < 1:
            raise ValueError(f"REST_PROXY_MAX_TOKENS must be >= 1, got {self.max_tokens}")
        if self.request_timeout <= 0:
            raise ValueError(f"REST_PROXY_TIMEOUT must be > 0, got {self.request_timeout}")
        if self.max_body_bytes < 1:
            raise ValueError(f"REST_PROXY_MAX_BODY_BYTES must be >= 1, got {self.max_body_bytes}")
        if self.auth is not None and not self.auth.strip():
            object.__setattr__(self, "auth", None)
        if self.token and self.auth is None and not self.allow_anonymous:
            raise ValueError(
                f"{PROXY_AUTH_ENV} is not set: with DISCORD_TOKEN the proxy answers as the bot "
                "to anyone who can reach it. Set REST_PROXY_AUTH to a shared secret (and give it "
                "to every worker), or REST_PROXY_ALLOW_ANONYMOUS=1 to accept that risk"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxySettings:
        """Build settings from ``REST_PROXY_*``, ``DISCORD_API_URL`` and ``DISCORD_TOKEN``."""
        env = os.environ if env is None else env
        token = env.get("DISCORD_TOKEN", "").strip().removeprefix("Bot ").strip() or None
        return cls(
            address=env.get("REST_PROXY_ADDRESS") or DEFAULT_PROXY_ADDRESS,
            upstream=env.get(API_URL_ENV) or DEFAULT_API_URL,
            token=token,
            auth=env.get(PROXY_AUTH_ENV, "").strip() or None,
            allow_anonymous=_bool(env, "REST_PROXY_ALLOW_ANONYMOUS"),
            max_body_bytes=_int(env, "REST_PROXY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            global_limit=_int(env, "REST_PROXY_GLOBAL_LIMIT", 50),
            max_retries=_int(env, "REST_PROXY_MAX_RETRIES", 3),
            invalid_request_threshold=_int(env, "REST_PROXY_INVALID_REQUEST_THRESHOLD", 9_000),
            request_timeout=_float(env, "REST_PROXY_TIMEOUT", 30.0),
            max_tokens=_int(env, "REST_PROXY_MAX_TOKENS", 8),
        )


def _bool(env: Mapping[str, str], key: str) -> bool:
    raw = env.get(key, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{key} must be 1 or 0 (true/false, yes/no), got {raw!r}")


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{key} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{key} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number of seconds, got {raw!r}")
    return value
