"""REST-only response shapes that the models package does not carry."""

from __future__ import annotations

import msgspec

__all__ = ["GatewayBot", "SessionStartLimit"]


class SessionStartLimit(msgspec.Struct, frozen=True):
    """How many IDENTIFYs the bot may still send before ``reset_after`` milliseconds."""

    total: int
    remaining: int
    reset_after: int
    max_concurrency: int = 1


class GatewayBot(msgspec.Struct, frozen=True):
    """``GET /gateway/bot``: where to connect and how many shards Discord recommends."""

    url: str
    shards: int
    session_start_limit: SessionStartLimit


class _Gateway(msgspec.Struct, frozen=True):
    url: str
