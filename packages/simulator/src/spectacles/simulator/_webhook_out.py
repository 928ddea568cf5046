"""Outgoing-webhook mode: interactions POSTed to the app's endpoint, signed with Ed25519.

As Discord does, the endpoint is verified before use: a PING with a wrong signature must be
refused (401) and a correctly signed PING answered with PONG (`{"type": 1}`). Each interaction
is then POSTed with `X-Signature-Ed25519` (hex signature of timestamp + body) and
`X-Signature-Timestamp`; the HTTP answer is the initial response, due within the response
deadline, and is recorded like a callback.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import msgspec
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from spectacles.observability import get_logger
from spectacles.simulator._errors import SimulatorError, ValidationError
from spectacles.simulator._interactions import NO_RESPONSE, Interaction, Interactions
from spectacles.simulator._rest import _body, _Route

__all__ = [
    "ApplicationEditApi",
    "EndpointVerificationError",
    "InteractionsEndpoint",
    "SigningKey",
]

log = get_logger("spectacles.simulator.webhook_out")

PONG: Final = 1
USER_AGENT: Final = "Discord-Interactions/1.0 (+https://discord.com)"
VERIFY_TIMEOUT: Final = 5.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class EndpointVerificationError(Exception):
    """The interactions endpoint did not pass Discord's PING checks; the message says why."""


class SigningKey:
    """The application's Ed25519 key pair; `public_hex` is its `verify_key`."""

    def __init__(self) -> None:
        self._private = Ed25519PrivateKey.generate()
        raw = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_hex = raw.hex()

    def headers(self, body: bytes, *, corrupt: bool = False) -> dict[str, str]:
        """Signature headers for `body`; `corrupt` signs other bytes (the endpoint must refuse)."""
        timestamp = str(int(time.time()))
        signed = (timestamp + ("x" if corrupt else "")).encode() + body
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Signature-Ed25519": self._private.sign(signed).hex(),
            "X-Signature-Timestamp": timestamp,
        }


class InteractionsEndpoint:
    """Delivers interactions to `url` once verified; plugged into `Interactions.outgoing`."""

    def __init__(self, interactions: Interactions, key: SigningKey) -> None:
        self.interactions = interactions
        self.key = key
        self.url: str | None = None
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        """Release the HTTP client."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def set_url(self, url: str | None) -> None:
        """Verify and switch to `url` (None: back to gateway delivery); else keep the old one."""
        if url is not None:
            await self.verify(url)
        self.url = url
        self.interactions.outgoing = self.deliver if url is not None else None

    def _ping(self) -> bytes:
        world = self.interactions.world
        return msgspec.json.encode(
            {
                "id": str(world.next_id()),
                "application_id": str(world.application_id),
                "type": 1,
                "token": secrets.token_urlsafe(48),
                "version": 1,
                "entitlements": [],
                "authorizing_integration_owners": {},
            }
        )

    async def verify(self, url: str) -> None:
        """Discord's checks: a badly signed PING gets 401, a good one gets PONG."""
        timeout = aiohttp.ClientTimeout(total=VERIFY_TIMEOUT)
        body = self._ping()
        try:
            async with self._client().post(
                url, data=body, headers=self.key.headers(body, corrupt=True), timeout=timeout
            ) as response:
                if response.status != 401:
                    raise EndpointVerificationError(
                        f"{url} answered {response.status} to a PING with an invalid signature; "
                        "it must verify X-Signature-Ed25519 and answer 401"
                    )
            body = self._ping()
            async with self._client().post(
                url, data=body, headers=self.key.headers(body), timeout=timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise EndpointVerificationError(f"{url} is unreachable: {error}") from None
        try:
            answer = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            answer = None
        if status != 200 or not isinstance(answer, dict) or answer.get("type") != PONG:
            raise EndpointVerificationError(
                f'{url} answered {status} {raw[:200]!r} to a PING; it must answer {{"type": 1}}'
            )

    async def deliver(self, interaction: Interaction) -> None:
        """POST the interaction; a JSON answer is its initial response."""
        url = self.url
        if url is None:
            return
        body = msgspec.json.encode(interaction.payload)
        interactions = self.interactions
        remaining = max(interaction.respond_by - interactions.clock(), 0.0)
        try:
            async with self._client().post(
                url,
                data=body,
                headers=self.key.headers(body),
                timeout=aiohttp.ClientTimeout(total=remaining),
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            interaction.note(interactions.clock(), "endpoint_error", error=repr(error))
            interactions.fail(interaction, NO_RESPONSE)
            return
        interaction.note(interactions.clock(), "endpoint_answer", status=status)
        if status in (202, 204) and not raw:
            return  # the app answers through the callback endpoint instead
        try:
            answer = msgspec.json.decode(raw)
            if status != 200 or not isinstance(answer, dict):
                raise ValueError(f"HTTP {status}")
            interactions.callback(interaction.id, interaction.token, answer, via="http")
        except (ValueError, msgspec.DecodeError, SimulatorError) as error:
            detail = error.body() if isinstance(error, SimulatorError) else str(error)
            interaction.note(interactions.clock(), "endpoint_bad_answer", error=detail)
            interactions.fail(interaction, NO_RESPONSE)
            log.warning("interaction_endpoint_bad_answer", status=status, error=str(detail))


class ApplicationEditApi:
    """`PATCH /applications/@me`: setting `interactions_endpoint_url` verifies it first."""

    def __init__(self, endpoint: InteractionsEndpoint, render: Handler) -> None:
        self.endpoint = endpoint
        self.render = render

    def routes(self) -> list[_Route]:
        """The one route."""
        return [_Route("PATCH", "/applications/@me", self.edit_application)]

    def fields(self) -> dict[str, Any]:
        """What the application object shows of the key and the endpoint."""
        return {
            "verify_key": self.endpoint.key.public_hex,
            "interactions_endpoint_url": self.endpoint.url,
        }

    async def edit_application(self, request: web.Request) -> web.StreamResponse:
        """Only `interactions_endpoint_url` is simulated (null or "" turns webhook mode off)."""
        body = await _body(request)
        if "interactions_endpoint_url" in body:
            url = body["interactions_endpoint_url"] or None
            if url is not None and (not isinstance(url, str) or "://" not in url):
                raise ValidationError.field(
                    "interactions_endpoint_url", "URL_TYPE_INVALID_URL", "Not a well formed URL."
                )
            try:
                await self.endpoint.set_url(url)
            except EndpointVerificationError as error:
                log.info("interactions_endpoint_rejected", reason=str(error))
                raise ValidationError.field(
                    "interactions_endpoint_url",
                    "APPLICATION_INTERACTIONS_ENDPOINT_URL_INVALID",
                    "The specified interactions endpoint url could not be verified.",
                ) from None
        return await self.render(request)
