"""Discord's request signature: Ed25519 over ``timestamp + body``, with the app's public key."""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["RequestRefused", "SignatureVerifier", "public_key_from_hex"]


class RequestRefused(Exception):
    """The request is not provably Discord's, or is too old to be fresh: answer 401."""


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    """The key of the Developer Portal's "Public Key" field (64 hex digits)."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError("DISCORD_PUBLIC_KEY must be hexadecimal (64 hex digits)") from None
    if len(raw) != 32:
        raise ValueError(f"DISCORD_PUBLIC_KEY must be 32 bytes (64 hex digits), got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


class SignatureVerifier:
    """Checks a request's signature and that its timestamp lies within ``max_age`` of now.

    The signature covers the timestamp, so a captured request cannot be given a new one; the
    age check then stops it from being replayed later.
    """

    def __init__(
        self,
        public_key: Ed25519PublicKey,
        *,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = public_key
        self._max_age = max_age
        self._clock = clock

    def verify(self, signature: str | None, timestamp: str | None, body: bytes) -> None:
        """Raise :class:`RequestRefused` unless the request is Discord's and fresh."""
        if not signature or not timestamp:
            raise RequestRefused("missing X-Signature-Ed25519 or X-Signature-Timestamp")
        try:
            self._key.verify(bytes.fromhex(signature), timestamp.encode() + body)
        except (ValueError, InvalidSignature):
            raise RequestRefused("bad signature") from None
        try:
            sent = float(timestamp)
        except ValueError:
            raise RequestRefused("timestamp is not a number") from None
        if abs(self._clock() - sent) > self._max_age:
            raise RequestRefused("timestamp outside the accepted window (replayed?)")
