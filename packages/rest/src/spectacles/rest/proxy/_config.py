"""Proxy settings, read from the environment once, in the entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from spectacles.observability import parse_address
from spectacles.settings import (
    Secret,
    SettingError,
    SettingsReader,
    boolean,
    integer,
    seconds,
    secret,
    string,
    validate,
)

from .._http import API_URL_ENV, DEFAULT_API_URL, PROXY_AUTH_ENV, resolve_base_url

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_PROXY_ADDRESS", "ProxySettings"]

#: Loopback when run bare: only this host reaches it. Compose sets ``0.0.0.0:8081``, which in a
#: container is the Compose network (the published host port stays 127.0.0.1-only).
DEFAULT_PROXY_ADDRESS: Final = "127.0.0.1:8081"
#: Discord's own upload limit for most bots; a bigger body is refused (413) before upstream.
DEFAULT_MAX_BODY_BYTES: Final = 25 * 1024 * 1024
_AT_LEAST_ONE: Final = integer(ge=1)
_RETRIES: Final = integer(ge=0)
_TIMEOUT: Final = seconds(gt=0)


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
        try:
            parse_address(self.address)
        except ValueError as exc:
            raise SettingError("REST_PROXY_ADDRESS", str(exc)) from None
        try:
            object.__setattr__(self, "upstream", resolve_base_url(self.upstream))
        except ValueError:
            raise SettingError(
                API_URL_ENV, f"expected an http(s) URL such as {DEFAULT_API_URL!r}"
            ) from None
        validate("REST_PROXY_GLOBAL_LIMIT", _AT_LEAST_ONE, self.global_limit)
        validate("REST_PROXY_MAX_RETRIES", _RETRIES, self.max_retries)
        validate(
            "REST_PROXY_INVALID_REQUEST_THRESHOLD", _AT_LEAST_ONE, self.invalid_request_threshold
        )
        validate("REST_PROXY_MAX_TOKENS", _AT_LEAST_ONE, self.max_tokens)
        validate("REST_PROXY_TIMEOUT", _TIMEOUT, self.request_timeout)
        validate("REST_PROXY_MAX_BODY_BYTES", _AT_LEAST_ONE, self.max_body_bytes)
        if self.auth is not None and not self.auth.strip():
            object.__setattr__(self, "auth", None)
        if self.token and self.auth is None and not self.allow_anonymous:
            raise SettingError(
                PROXY_AUTH_ENV,
                "is not set; with DISCORD_TOKEN the proxy answers as the bot to anyone who can "
                "reach it. Set REST_PROXY_AUTH to a shared secret (and give it to every worker), "
                "or REST_PROXY_ALLOW_ANONYMOUS=1 to accept that risk",
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxySettings:
        """Build settings from ``REST_PROXY_*``, ``DISCORD_API_URL`` and ``DISCORD_TOKEN``."""
        read = SettingsReader(os.environ if env is None else env)
        token = read.var("DISCORD_TOKEN", secret(), Secret("")).reveal()
        return cls(
            address=read.var("REST_PROXY_ADDRESS", string(), DEFAULT_PROXY_ADDRESS),
            upstream=read.var(API_URL_ENV, string(), DEFAULT_API_URL),
            token=token.removeprefix("Bot ").strip() or None,
            auth=read.var(PROXY_AUTH_ENV, secret(), Secret("")).reveal() or None,
            allow_anonymous=read.var("REST_PROXY_ALLOW_ANONYMOUS", boolean(), False),
            max_body_bytes=read.var(
                "REST_PROXY_MAX_BODY_BYTES", _AT_LEAST_ONE, DEFAULT_MAX_BODY_BYTES
            ),
            global_limit=read.var("REST_PROXY_GLOBAL_LIMIT", _AT_LEAST_ONE, 50),
            max_retries=read.var("REST_PROXY_MAX_RETRIES", _RETRIES, 3),
            invalid_request_threshold=read.var(
                "REST_PROXY_INVALID_REQUEST_THRESHOLD", _AT_LEAST_ONE, 9_000
            ),
            request_timeout=read.var("REST_PROXY_TIMEOUT", _TIMEOUT, 30.0),
            max_tokens=read.var("REST_PROXY_MAX_TOKENS", _AT_LEAST_ONE, 8),
        )
