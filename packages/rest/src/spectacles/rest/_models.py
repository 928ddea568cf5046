"""REST-only response shapes that the models package does not carry (GatewayBot lives there)."""

from __future__ import annotations

import msgspec

__all__: list[str] = []


class _Gateway(msgspec.Struct, frozen=True):
    url: str
