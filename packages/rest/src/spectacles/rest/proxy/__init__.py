"""REST proxy: one shared rate limiter per token in front of Discord for many processes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import RestProxy, TooManyTokens, serve_forever, token_key
    from ._config import DEFAULT_MAX_BODY_BYTES, DEFAULT_PROXY_ADDRESS, ProxySettings

# Imported on first use, like the parent package (see spectacles.rest).
_EXPORTS: dict[str, str] = {
    "DEFAULT_MAX_BODY_BYTES": "._config",
    "DEFAULT_PROXY_ADDRESS": "._config",
    "ProxySettings": "._config",
    "RestProxy": "._app",
    "serve_forever": "._app",
    "token_key": "._app",
    "TooManyTokens": "._app",
}

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PROXY_ADDRESS",
    "ProxySettings",
    "RestProxy",
    "TooManyTokens",
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
