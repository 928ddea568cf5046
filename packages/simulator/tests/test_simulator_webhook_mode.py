"""Outgoing-webhook mode: verified endpoint (PING), Ed25519-signed interactions, HTTP answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from spectacles.simulator import Simulator, SimulatorConfig
from spectacles.simulator._webhook_out import EndpointVerificationError

FAST = {"identify_interval": 0.0, "token": "test-token"}
AUTH = {"Authorization": f"Bot {FAST['token']}"}
Answer = Callable[[dict[str, Any]], Awaitable[web.Response]]


class Endpoint:
    """An app's interactions endpoint that checks signatures as Discord asks apps to."""

    def __init__(self, answer: Answer, *, check_signatures: bool = True) -> None:
        self.answer = answer
        self.check_signatures = check_signatures
        self.public_key: Ed25519PublicKey | None = None
        self.received: list[dict[str, Any]] = []
        self.rejected = 0
        self.got_interaction = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        signature = request.headers.get("X-Signature-Ed25519", "")
        timestamp = request.headers.get("X-Signature-Timestamp", "")
        if self.check_signatures:
            assert self.public_key is not None
            try:
                self.public_key.verify(bytes.fromhex(signature), timestamp.encode() + body)
            except (InvalidSignature, ValueError):
                self.rejected += 1
                return web.Response(status=401, text="invalid request signature")
        payload = json.loads(body)
        self.received.append(payload)
        if payload["type"] == 1:
            return web.json_response({"type": 1})
        self.got_interaction.set()
        return await self.answer(payload)


@asynccontextmanager
async def serve(endpoint: Endpoint) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/interactions", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/interactions"
    finally:
        await runner.cleanup()


async def pong(payload: dict[str, Any]) -> web.Response:
    return web.json_response({"type": 4, "data": {"content": "Pong over HTTP!"}})


async def _register_ping(sim, http) -> None:
    url = f"{sim.api_url}/applications/{sim.world.application_id}/commands"
    body = {"name": "ping", "description": "Pong"}
    async with http.post(url, json=body, headers=AUTH) as response:
        assert response.status == 201


async def _invoke(sim, http) -> dict[str, Any]:
    guild = next(iter(sim.world.guilds.values()))
    url = f"{sim.control_url}/guilds/{guild.id}/channels/{guild.system_channel_id}/interactions"
    async with http.post(url, json={"command": "ping"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _state_when(sim, http, interaction_id, predicate, timeout=10.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with http.get(f"{sim.control_url}/interactions/{interaction_id}") as response:
            state = await response.json()
        if predicate(state):
            return state
        assert loop.time() < deadline, state
        await asyncio.sleep(0.05)


async def test_verified_endpoint_gets_signed_interactions_and_answers_over_http(http, gateway):
    endpoint = Endpoint(pong)
    async with serve(endpoint) as url:
        sim = Simulator(SimulatorConfig(**FAST, interactions_url=url))
        endpoint.public_key = Ed25519PublicKey.from_public_bytes(
            bytes.fromhex(sim.signing_key.public_hex)
        )
        await sim.start()
        try:
            # Discord's checks at registration: a bad signature refused, then a PING answered.
            assert endpoint.rejected == 1
            assert [p["type"] for p in endpoint.received] == [1]
            for path in ("/applications/@me", "/oauth2/applications/@me"):
                async with http.get(sim.api_url + path, headers=AUTH) as response:
                    application = await response.json()
                assert application["verify_key"] == sim.signing_key.public_hex
                assert application["interactions_endpoint_url"] == url
            await _register_ping(sim, http)
            async with gateway(sim) as client:
                await client.identify()
                created = await _invoke(sim, http)
                await asyncio.wait_for(endpoint.got_interaction.wait(), 10)
                state = await _state_when(sim, http, created["id"], lambda s: s["response"])
                with pytest.raises(asyncio.TimeoutError):
                    await client.recv_event("INTERACTION_CREATE", timeout=0.3)
        finally:
            await sim.stop()
    interaction = endpoint.received[-1]
    assert interaction["type"] == 2 and interaction["id"] == created["id"]
    assert interaction["token"] == created["token"] and interaction["data"]["name"] == "ping"
    assert state["delivery"] == "webhook" and state["response"]["via"] == "http"
    assert state["original"]["content"] == "Pong over HTTP!"


async def test_endpoint_that_skips_signature_checks_is_refused(http, make_sim):
    endpoint = Endpoint(pong, check_signatures=False)
    async with serve(endpoint) as url:
        sim = Simulator(SimulatorConfig(**FAST, interactions_url=url))
        with pytest.raises(EndpointVerificationError, match="invalid signature"):
            await sim.start()
        assert sim._runner is None  # it did not keep serving
        # The same check when the URL is set through the API, as in the Developer Portal.
        sim = await make_sim()
        body = {"interactions_endpoint_url": url}
        async with http.patch(sim.api_url + "/applications/@me", json=body, headers=AUTH) as r:
            error = await r.json()
        assert r.status == 400 and error["code"] == 50035
        assert "interactions_endpoint_url" in error["errors"]
        assert sim.interactions.outgoing is None


async def test_endpoint_set_through_the_api_and_a_slow_answer_fails(http, make_sim):
    release = asyncio.Event()

    async def too_slow(payload: dict[str, Any]) -> web.Response:
        await release.wait()
        return await pong(payload)

    endpoint = Endpoint(too_slow)
    async with serve(endpoint) as url:
        sim = await make_sim(interaction_response_timeout=0.5)
        endpoint.public_key = Ed25519PublicKey.from_public_bytes(
            bytes.fromhex(sim.signing_key.public_hex)
        )
        body = {"interactions_endpoint_url": url}
        async with http.patch(sim.api_url + "/applications/@me", json=body, headers=AUTH) as r:
            assert r.status == 200
            assert (await r.json())["interactions_endpoint_url"] == url
        await _register_ping(sim, http)
        created = await _invoke(sim, http)
        state = await _state_when(sim, http, created["id"], lambda s: s["failed"])
        release.set()
    assert state["failure"] == "The application did not respond"
    assert state["delivery"] == "webhook" and state["response"] is None
