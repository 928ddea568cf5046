"""Rate limits against the simulator with its limits forced low."""

import asyncio
from collections import Counter
from typing import Any

from spectacles.rest import RateLimiter, RestClient

MESSAGES = "POST /channels/{channel_id}/messages"


async def channel_ids(sim: Any) -> list[int]:
    return [int(c["id"]) for g in await sim.guilds() for c in g["channels"]]


async def assert_each_posted_once(sim: Any, channel_id: int, contents: list[str]) -> None:
    stored = Counter(m["content"] for m in await sim.messages(channel_id))
    assert {c: stored[c] for c in contents} == dict.fromkeys(contents, 1)


async def test_one_client_never_triggers_a_429(make_sim: Any) -> None:
    sim = await make_sim(route_limits={MESSAGES: (3, 0.5)})
    channel_id = (await channel_ids(sim))[0]
    contents = [f"burst-{i}" for i in range(12)]
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        await asyncio.wait_for(
            asyncio.gather(*(rest.create_message(channel_id, c) for c in contents)), 30
        )
    stats = await sim.stats()
    assert stats["rate_limited"] == 0
    await assert_each_posted_once(sim, channel_id, contents)


async def test_429s_are_waited_out_and_retried(make_sim: Any) -> None:
    # Two clients with separate limiters spend one bucket: 429s are unavoidable for them.
    sim = await make_sim(route_limits={MESSAGES: (3, 0.5)})
    channel_id = (await channel_ids(sim))[0]
    contents = [f"pair-{i}" for i in range(12)]
    async with (
        RestClient(sim.token, base_url=sim.api_url) as first,
        RestClient(sim.token, base_url=sim.api_url) as second,
    ):
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    (first if i % 2 else second).create_message(channel_id, content)
                    for i, content in enumerate(contents)
                )
            ),
            30,
        )
    stats = await sim.stats()
    assert stats["rate_limited"] > 0, "the 429 path was not exercised"
    await assert_each_posted_once(sim, channel_id, contents)
    log = await sim.rest_log()
    assert sum(1 for c in log if c["status"] == 429) == stats["rate_limited"]


async def test_global_limit_is_respected_across_routes(make_sim: Any) -> None:
    sim = await make_sim(global_rate_limit=5)
    channels = await channel_ids(sim)
    limiter = RateLimiter(global_limit=5)
    async with RestClient(sim.token, base_url=sim.api_url, ratelimiter=limiter) as rest:
        fetched = await asyncio.wait_for(
            asyncio.gather(*(rest.get_channel(channels[i % len(channels)]) for i in range(15))), 30
        )
    assert len(fetched) == 15
    stats = await sim.stats()
    assert stats["rate_limited"] == 0 and stats["global_rate_limited"] == 0


async def test_global_429_is_waited_out(make_sim: Any) -> None:
    sim = await make_sim(global_rate_limit=5)
    channels = await channel_ids(sim)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:  # believes 50/s
        fetched = await asyncio.wait_for(
            asyncio.gather(*(rest.get_channel(channels[i % len(channels)]) for i in range(12))), 30
        )
    assert len(fetched) == 12
    assert (await sim.stats())["global_rate_limited"] > 0
