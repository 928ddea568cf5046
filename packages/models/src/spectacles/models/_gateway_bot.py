"""`GET /gateway/bot`: where to connect, how many shards, and the IDENTIFY budget.

Read by the gateway (once, at start-up) and by the REST client; one shape for both.
"""

from __future__ import annotations

import msgspec

__all__ = ["GatewayBot", "SessionStartLimit"]


class SessionStartLimit(msgspec.Struct, frozen=True):
    """How many IDENTIFYs are left before ``reset_after`` ms, and how many may run per 5 s."""

    total: int
    remaining: int
    reset_after: int
    max_concurrency: int = 1


class GatewayBot(msgspec.Struct, frozen=True):
    """The answer of ``GET /gateway/bot``: gateway URL and the recommended shard count."""

    url: str
    shards: int
    session_start_limit: SessionStartLimit
