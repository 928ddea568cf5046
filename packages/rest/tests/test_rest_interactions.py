"""Interaction callbacks and webhooks: the client helpers, and no global-limit wait for them."""

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from spectacles.broker.admin import BrokerAdmin
from spectacles.rest import RateLimiter, RestClient, Route
from spectacles.rest.proxy import (
    IngressOffer,
    ProxySettings,
    RestProxy,
    interactions_exchange,
    offer_from_env,
)
from spectacles.settings import SettingError


async def held(request: Any) -> bool:
    """Whether a request counted against the global limit is being held (not sent)."""
    try:
        await asyncio.wait_for(request, 0.5)
    except TimeoutError:
        return True
    return False


async def test_interaction_answers_bypass_an_exhausted_global_limit(upstream: Any) -> None:
    limiter = RateLimiter()
    limiter.pause_global(60.0)  # as after a global 429: every counted request waits a minute
    async with RestClient("t", base_url=upstream.url, ratelimiter=limiter) as rest:
        assert await held(rest.request(Route("GET", "/users/@me")))
        upstream.script.append(lambda _request: _no_content())
        started = time.monotonic()
        await rest.create_interaction_response(11, "tok", {"type": 5})
        await rest.edit_original_response(7, "tok", {"content": "done"})
        await rest.create_followup_message(7, "tok", {"content": "more"})
        assert time.monotonic() - started < 5.0  # not the minute the global limit would hold
    sent = [(m, p, json.loads(b) if b else None) for m, p, _, b, _ in upstream.requests]
    assert sent == [
        ("POST", "/api/v10/interactions/11/tok/callback", {"type": 5}),
        ("PATCH", "/api/v10/webhooks/7/tok/messages/@original", {"content": "done"}),
        ("POST", "/api/v10/webhooks/7/tok", {"content": "more"}),
    ]


async def test_proxy_lets_interaction_answers_past_its_exhausted_global_limit(
    upstream: Any,
) -> None:
    proxy = RestProxy(ProxySettings(address="127.0.0.1:0", upstream=upstream.url))
    await proxy.start()
    proxy.limiter_for("Bot t").pause_global(60.0)  # as after a global 429
    try:
        async with aiohttp.ClientSession() as session:
            base = f"{proxy.url}/api/v10"
            headers = {"Authorization": "Bot t"}
            assert await held(session.get(f"{base}/users/@me", headers=headers))
            for method, path in (
                ("POST", "/interactions/11/tok/callback"),
                ("PATCH", "/webhooks/7/tok/messages/@original"),
                ("POST", "/webhooks/7/tok"),
            ):
                async with asyncio.timeout(5.0):
                    async with session.request(
                        method, base + path, json={"content": "x"}, headers=headers
                    ) as answer:
                        assert answer.status == 200, path
    finally:
        await proxy.stop()


async def _no_content() -> Any:
    return web.Response(status=204)


@pytest.mark.parametrize("broker", ["running", "unreachable"])
async def test_callback_nobody_waits_for_goes_upstream(
    upstream: Any, amqp_url: str, unique_name: str, broker: str
) -> None:
    """No ingress bound (unroutable offer), or no RabbitMQ at all: Discord gets the callback."""
    url = amqp_url if broker == "running" else "amqp://guest:guest@127.0.0.1:1/"
    offer = IngressOffer(url, unique_name, timeout=1.0)
    proxy = RestProxy(ProxySettings(address="127.0.0.1:0", upstream=upstream.url), ingress=offer)
    await proxy.start()
    try:
        if broker == "running":
            async with asyncio.timeout(10):
                while not offer.ready:
                    await asyncio.sleep(0.05)
        upstream.script.append(lambda _request: _no_content())
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{proxy.url}/api/v10/interactions/11/tok/callback",
                json={"type": 4, "data": {"content": "hi"}},
            ) as answer,
        ):
            assert answer.status == 204
    finally:
        await proxy.stop()
        if broker == "running":
            async with await BrokerAdmin.connect(amqp_url) as admin:
                await admin.delete_exchange(interactions_exchange(unique_name))
    assert [(m, p) for m, p, *_ in upstream.requests] == [
        ("POST", "/api/v10/interactions/11/tok/callback")
    ]


def test_offer_settings_are_read_like_every_services_and_name_the_bad_key() -> None:
    assert offer_from_env({}) is None
    assert offer_from_env({"AMQP_URL": "  "}) is None
    offer = offer_from_env(
        {"AMQP_URL": "amqp://u:pw@h1/, amqp://u:pw@h2/", "AMQP_URL_ORDER": "in-order"}
    )
    assert offer is not None
    assert offer.settings.url_order == "in-order"
    assert offer.exchange_name == "gateway.interactions"
    for env, key in (
        ({"AMQP_URL": "http://u:secret-pw@h/"}, "AMQP_URL"),
        ({"AMQP_URL": "amqp://h/", "AMQP_URL_ORDER": "random"}, "AMQP_URL_ORDER"),
        ({"AMQP_URL": "amqp://h/", "BROKER_GROUP": "no spaces"}, "BROKER_GROUP"),
    ):
        with pytest.raises(SettingError, match=key) as caught:
            offer_from_env(env)
        assert caught.value.key == key
        assert "secret-pw" not in str(caught.value)
