"""The whole HTTP-interactions path: simulator (webhook mode) -> ingress -> RabbitMQ -> worker
-> REST proxy -> back to the ingress as the HTTP answer (or to the simulator when too late)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from spectacles.interactions import InteractionsIngress
from spectacles.models import Interaction
from spectacles.rest.proxy import IngressOffer, ProxySettings, RestProxy
from spectacles.simulator import Simulator, SimulatorConfig
from spectacles.worker import CommandContext, Worker, WorkerSettings


class Stack:
    def __init__(
        self,
        sim: Simulator,
        http: aiohttp.ClientSession,
        proxy: RestProxy,
        ingress: InteractionsIngress,
    ) -> None:
        self.sim = sim
        self.http = http
        self.proxy = proxy
        self.ingress = ingress

    async def wait_ready(self) -> None:
        """Until the proxy can offer answers and the ingress can receive them."""
        async with asyncio.timeout(20):
            while not (
                self.proxy.ingress is not None
                and self.proxy.ingress.ready
                and self.ingress.ready()[0]
            ):
                await asyncio.sleep(0.05)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.sim.control_url + path, json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def use(self, command: str) -> str:
        guild = next(iter(self.sim.world.guilds.values()))
        created = await self.control(
            "POST",
            f"/guilds/{guild.id}/channels/{guild.system_channel_id}/interactions",
            {"command": command},
        )
        return str(created["id"])

    async def settled(self, interaction_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """The interaction's state once answered for good (or failed)."""
        async with asyncio.timeout(timeout):
            while True:
                state = dict(await self.control("GET", f"/interactions/{interaction_id}"))
                if state["status"] in ("responded", "failed"):
                    return state
                await asyncio.sleep(0.05)

    async def callbacks_sent_to_discord(self) -> int:
        log = await self.control("GET", "/rest-log")
        return sum(1 for c in log if c["path"].endswith("/callback"))


@pytest.fixture
async def stack(
    amqp_url: str, group: str, make_ingress: Callable[..., Awaitable[InteractionsIngress]]
) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    exits = contextlib.AsyncExitStack()

    async def start(handler_delay: float, response_timeout: float) -> Stack:
        sim = await exits.enter_async_context(
            Simulator(SimulatorConfig(guilds=1, members_per_guild=5, identify_interval=0.0))
        )
        http = await exits.enter_async_context(aiohttp.ClientSession())
        proxy = RestProxy(
            ProxySettings(address="127.0.0.1:0", upstream=sim.api_url),
            ingress=IngressOffer(amqp_url, group, connection_name=f"{group}-proxy"),
        )
        await proxy.start()
        exits.push_async_callback(proxy.stop)
        worker = Worker("ping")

        @worker.command("hello", description="Say hello")
        async def hello(interaction: Interaction, ctx: CommandContext) -> None:
            await asyncio.sleep(handler_delay)
            await ctx.respond("Hello!")

        settings = WorkerSettings(
            discord_token=sim.config.token,
            amqp_url=amqp_url,
            group=group,
            discord_api_url=proxy.url + "/api/v10",
            metrics_address="127.0.0.1:0",
        )
        await exits.enter_async_context(worker.running(settings))
        ingress = await make_ingress(
            public_key=sim.signing_key.public_hex,
            response_timeout=response_timeout,
            connection_name=f"{group}-ingress",
        )
        # As in the Developer Portal: Discord checks the endpoint (bad signature -> 401, PING).
        async with http.patch(
            f"{sim.api_url}/applications/@me",
            json={"interactions_endpoint_url": ingress.url},
            headers={"Authorization": f"Bot {sim.config.token}"},
        ) as response:
            assert response.status == 200, await response.text()
        stack = Stack(sim, http, proxy, ingress)
        await stack.wait_ready()
        return stack

    async with exits:
        yield start


async def test_workers_respond_is_the_http_answer(stack: Any) -> None:
    s = await stack(handler_delay=0.0, response_timeout=2.5)
    state = await s.settled(await s.use("hello"))
    assert state["failed"] is False, state
    assert state["delivery"] == "webhook"
    assert state["response"]["via"] == "http"  # Discord got it as the HTTP answer...
    assert state["response"]["type"] == 4
    assert state["response"]["data"]["content"] == "Hello!"
    assert await s.callbacks_sent_to_discord() == 0  # ...and never as a REST callback


async def test_slow_worker_gets_a_deferred_answer_then_edits_it(stack: Any) -> None:
    s = await stack(handler_delay=1.2, response_timeout=0.5)
    state = await s.settled(await s.use("hello"))
    assert state["failed"] is False, state
    # The ingress deferred in time; the worker's late respond() went to Discord, which said
    # "already acknowledged", and became an edit of the deferred original.
    assert state["response"]["via"] == "http"
    assert state["response"]["type"] == 5
    assert state["original"]["content"] == "Hello!"


async def test_answers_reach_the_ingress_again_after_rabbitmq_dropped_the_connections(
    stack: Any, group: str, kill_connections: Any
) -> None:
    s = await stack(handler_delay=0.0, response_timeout=2.5)
    assert kill_connections(f"{group}-proxy") == 1
    assert kill_connections(f"{group}-ingress") == 2  # answers and publisher connections
    await asyncio.sleep(0)  # let the drops be noticed before waiting for readiness
    async with asyncio.timeout(20):
        while s.proxy.ingress.ready and s.ingress.ready()[0]:
            await asyncio.sleep(0.05)  # the drop is seen...
    await s.wait_ready()  # ...and healed
    state = await s.settled(await s.use("hello"))
    assert state["response"]["via"] == "http" and state["response"]["type"] == 4, state
    assert await s.callbacks_sent_to_discord() == 0
