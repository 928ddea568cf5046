"""REST proxy: one shared rate limiter per token in front of Discord for many processes."""

from ._app import RestProxy, TooManyTokens, serve_forever, token_key
from ._config import DEFAULT_PROXY_ADDRESS, ProxySettings

__all__ = [
    "DEFAULT_PROXY_ADDRESS",
    "ProxySettings",
    "RestProxy",
    "TooManyTokens",
    "serve_forever",
    "token_key",
]
