"""A shard driven against the simulator with an in-memory sink: the protocol without RabbitMQ.

The sink owns the resume point: these tests check that the shard hands over every dispatch in
order, never moves the resume point itself, and RESUMEs after a drop with the sink's point.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
from gateway_testkit import TOKEN, Control, running_simulator, wait_until

from spectacles.gateway import IdentifyQueue, Shard
from spectacles.gateway.config import GatewaySettings
from spectacles.gateway.session import SessionState
from spectacles.gateway.sink import MemorySink, SinkUnavailable
from spectacles.models import Intents
from spectacles.simulator import Simulator


def memory_shard(sim: Simulator, sink: MemorySink, session: SessionState | None = None) -> Shard:
    return Shard(
        0,
        1,
        token=TOKEN,
        intents=Intents.GUILDS | Intents.GUILD_MESSAGES,
        gateway_url=sim.gateway_url,
        identify_queue=IdentifyQueue(interval=0.0),
        sink=sink,
        settings=GatewaySettings(backoff_base=0.05, backoff_max=0.1, compress="none"),
        session=session,
    )


@contextlib.asynccontextmanager
async def started(shard: Shard) -> AsyncIterator[Shard]:
    await shard.start()
    try:
        await shard.wait_ready(10)
        yield shard
    finally:
        await shard.close()


async def sim_resumes(control: Control) -> int:
    return int((await control.stats())["resumes"])


async def test_shard_hands_every_dispatch_to_the_sink_in_seq_order(
    http: aiohttp.ClientSession,
) -> None:
    sink = MemorySink()
    async with running_simulator() as sim, started(memory_shard(sim, sink)) as shard:
        control = Control(http, sim.base_url)
        await control.post("/flood", {"count": 40, "wait": True})
        await wait_until(lambda: sink.events and sink.events[-1][0] >= 42, what="the flood")
        assert shard.session is not None
        session_id = shard.session.session_id
    seqs = [seq for seq, _, _ in sink.events]
    assert seqs == list(range(1, len(seqs) + 1))  # every seq, in order, each once
    names = [name for _, name, _ in sink.events]
    assert names[:3] == ["READY", "GUILD_CREATE", "GUILD_CREATE"]
    assert names[3:] == ["MESSAGE_CREATE"] * 40
    assert sink.sessions == [session_id]  # named before READY was handed over
    assert sink.events[3][2].startswith(b"{")  # `d` only, not the envelope


async def test_shard_moves_the_resume_point_only_when_the_sink_says_so(
    http: aiohttp.ClientSession,
) -> None:
    sink = MemorySink()
    async with running_simulator() as sim, started(memory_shard(sim, sink)) as shard:
        control = Control(http, sim.base_url)
        await control.post("/flood", {"count": 20, "wait": True})
        await wait_until(lambda: len(sink.events) >= 23, what="the flood")
        assert shard.session is not None and shard.session.seq == 0  # nothing made safe
        assert shard.pending_confirms == 23
        sink.advance(7)
        assert shard.session is not None and shard.session.seq == 7
        assert shard.pending_confirms == 16


async def test_shard_after_a_drop_resumes_from_the_sinks_point_and_gets_the_rest_again(
    http: aiohttp.ClientSession,
) -> None:
    sink = MemorySink()
    async with running_simulator() as sim, started(memory_shard(sim, sink)) as shard:
        control = Control(http, sim.base_url)
        await control.post("/flood", {"count": 20, "wait": True})
        await wait_until(lambda: len(sink.events) >= 23, what="the flood")
        sink.advance(10)
        resumes = await sim_resumes(control)
        await control.post("/shards/0/drop")
        await wait_until(lambda: shard.resumes == 1, what="a RESUME")
        await shard.wait_ready(10)
        assert await sim_resumes(control) == resumes + 1
        # The replay starts right after the sink's point (seq 10), not after the last received.
        await wait_until(lambda: len(sink.events) >= 23 + 13, what="the replay")
        replayed = [seq for seq, _, _ in sink.events[23:]]
        assert replayed[:13] == list(range(11, 24))
        assert sink.connections == 2


async def test_shard_when_the_sink_fails_resumes_once_it_is_back(
    http: aiohttp.ClientSession,
) -> None:
    sink = MemorySink(auto_advance=True)
    async with running_simulator() as sim, started(memory_shard(sim, sink)) as shard:
        control = Control(http, sim.base_url)
        await control.post("/flood", {"count": 5, "wait": True})
        await wait_until(lambda: sink.resume_seq >= 8, what="the flood")
        sink.fail_connection(SinkUnavailable("test: sink away"))
        await wait_until(lambda: shard.reconnects["broker"] == 1, what="the reconnect")
        await shard.wait_ready(10)
        assert shard.resumes == 1 and shard.identifies == 1


async def test_shard_with_a_saved_session_resumes_from_its_seq(
    http: aiohttp.ClientSession,
) -> None:
    first = MemorySink(auto_advance=True)
    async with running_simulator() as sim:
        control = Control(http, sim.base_url)
        async with started(memory_shard(sim, first)) as shard:
            await control.post("/flood", {"count": 10, "wait": True})
            await wait_until(lambda: first.resume_seq >= 13, what="the flood")
            saved = shard.session
        assert saved is not None
        second = MemorySink()
        async with started(
            memory_shard(
                sim,
                second,
                SessionState(
                    **{**{f: getattr(saved, f) for f in saved.__struct_fields__}, "seq": 5}
                ),
            )
        ) as shard:
            assert shard.identifies == 0 and shard.resumes == 1
            await wait_until(lambda: len(second.events) >= 8, what="the replay")
        assert [seq for seq, _, _ in second.events[:8]] == list(range(6, 14))
        assert second.resume_seq == 5  # the new sink made nothing safe
