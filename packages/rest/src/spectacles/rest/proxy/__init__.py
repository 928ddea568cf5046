"""REST proxy: one shared rate limiter per token in front of Discord for many processes."""

from ._app import RestProxy, TooManyTokens, serve_forever, token_key
from ._config import DEFAULT_PROXY_ADDRESS, ProxySettings
from ._interactions import (
    TOKEN_HEADER,
    IngressOffer,
    OfferReply,
    interactions_exchange,
    offer_from_env,
)

__all__ = [
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
