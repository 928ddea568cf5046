"""REST proxy: one shared rate limiter per token in front of Discord for many processes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import RestProxy, TooManyTokens, serve_forever, token_key
    from ._config import DEFAULT_MAX_BODY_BYTES, DEFAULT_PROXY_ADDRESS, ProxySettings
    from ._interactions import (
        TOKEN_HEADER,
        IngressOffer,
        OfferReply,
        interactions_exchange,
        offer_from_env,
    )

# Imported on first use, like the parent package (see spectacles.rest).
_EXPORTS: dict[str, str] = {
    "DEFAULT_MAX_BODY_BYTES": "._config",
    "DEFAULT_PROXY_ADDRESS": "._config",
    "ProxySettings": "._config",
    "RestProxy": "._app",
    "serve_forever": "._app",
    "token_key": "._app",
    "TooManyTokens": "._app",
    "TOKEN_HEADER": "._interactions",
    "IngressOffer": "._interactions",
    "OfferReply": "._interactions",
    "interactions_exchange": "._interactions",
    "offer_from_env": "._interactions",
}

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PROXY_ADDRESS",
    "TOKEN_HEADER",
    "IngressOffer",
    "OfferReply",
    "ProxySettings",
    "RestProxy",
    "TooManyTokens",
    "interactions_exchange",
    "offer_from_env",
    "serve_forever",
    "token_key",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
