"""Pure logic: confirm tracking, identify pacing, send limits, decompression, command rules.

Also `GET /gateway/bot` through the REST client, against the simulator.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from pathlib import Path

import pytest
import zstandard
from gateway_testkit import TOKEN, running_simulator

from spectacles.broker.errors import DeadLetter
from spectacles.gateway import (
    FileSessionStore,
    GatewayUnreachable,
    IdentifyLimitExceeded,
    IdentifyQueue,
    ResumeTracker,
    SendLimiter,
    SessionState,
    TransportError,
)
from spectacles.gateway.commands import validate_command_body
from spectacles.gateway.service import fetch_gateway_bot
from spectacles.gateway.transport import _ZlibStream, _ZstdStream, build_gateway_url, env_proxy


def test_confirm_tracker_advances_only_over_contiguous_confirms() -> None:
    tracker = ResumeTracker(0)
    tracker.skip(1)  # READY, not relayed, nothing pending: confirmed at once
    assert tracker.confirmed == 1
    tracker.track(2, "MESSAGE_CREATE")
    tracker.skip(3)  # not relayed, but behind an unconfirmed event
    tracker.track(4, "MESSAGE_CREATE")
    tracker.track(5, "GUILD_CREATE")
    assert tracker.confirmed == 1
    tracker.publish_confirmed(4)  # RabbitMQ may confirm out of order
    assert tracker.confirmed == 1  # 2 is still unconfirmed
    tracker.publish_confirmed(2)
    assert tracker.confirmed == 4  # 2, then 3 (not relayed), then the early 4
    assert tracker.pending == 1
    tracker.publish_confirmed(5)
    assert tracker.confirmed == 5
    assert tracker.published == {"MESSAGE_CREATE": 2, "GUILD_CREATE": 1}
    assert tracker.pending == 0


async def test_confirm_tracker_when_publish_fails_holds_and_reports() -> None:
    failures: list[BaseException] = []
    tracker = ResumeTracker(10, failures.append)
    tracker.track(11, "X")
    tracker.track(12, "X")
    tracker.publish_failed(11, ConnectionError("gone"))
    tracker.publish_confirmed(12)
    assert len(failures) == 1 and isinstance(failures[0], ConnectionError)
    tracker.publish_failed(12, ConnectionError("again"))  # only the first failure is reported
    assert len(failures) == 1
    # Nothing after a failed event can become the resume point; drain does not wait for it.
    assert await asyncio.wait_for(tracker.drain(5.0), 1.0) == 10


async def test_confirm_tracker_drain_waits_for_confirms_then_times_out() -> None:
    tracker = ResumeTracker(0)
    tracker.track(1, "X")
    tracker.skip(2)
    tracker.track(3, "X")
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, tracker.publish_confirmed, 3)
    loop.call_later(0.1, tracker.publish_confirmed, 1)
    assert await asyncio.wait_for(tracker.drain(5.0), 2.0) == 3
    tracker.track(4, "X")
    started = loop.time()
    assert await tracker.drain(0.2) == 3  # never confirmed: bounded wait, resume point kept
    assert loop.time() - started >= 0.19


async def test_confirm_tracker_drain_does_not_wait_for_an_event_never_written() -> None:
    tracker = ResumeTracker(0)
    tracker.track(1, "X")
    tracker.track(2, "X")  # its submit was cancelled (shutdown while RabbitMQ was away)
    tracker.abandon(2)
    tracker.track(3, "X")  # cannot happen after an abandon in one connection; still held back
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, tracker.publish_confirmed, 1)
    started = loop.time()
    assert await tracker.drain(5.0) == 1  # waited for 1, not for 2 (never settles)
    assert loop.time() - started < 2.0
    tracker.publish_confirmed(3)
    assert tracker.confirmed == 1  # nothing passes the abandoned event


async def test_confirm_tracker_drain_returns_at_once_when_only_abandoned_is_pending() -> None:
    tracker = ResumeTracker(7)
    tracker.track(8, "X")
    tracker.abandon(8)
    assert await asyncio.wait_for(tracker.drain(10.0), 1.0) == 7


def test_confirm_tracker_samples_latency_of_marked_events() -> None:
    latencies: list[float] = []
    tracker = ResumeTracker(0, latencies=latencies)
    tracker.track(1, "X")
    tracker.sample_latency(1)
    tracker.track(2, "X")
    tracker.publish_confirmed(1)
    tracker.publish_confirmed(2)
    assert len(latencies) == 1 and 0 <= latencies[0] < 1


async def test_identify_queue_paces_each_bucket() -> None:
    queue = IdentifyQueue(max_concurrency=2, interval=0.2)
    sent: dict[int, float] = {}

    async def identify(shard_id: int) -> None:
        async with queue.slot(shard_id):
            sent[shard_id] = time.monotonic()

    await asyncio.gather(*(identify(i) for i in range(4)))
    # 0 and 1 are in different buckets; 2 waits for 0, 3 waits for 1.
    assert sent[2] - sent[0] >= 0.2
    assert sent[3] - sent[1] >= 0.2


async def test_identify_queue_never_spends_the_reserve() -> None:
    """The quota is never spent down to 0: with remaining == shards nothing may start."""
    queue = IdentifyQueue(
        max_concurrency=1, interval=0, remaining=3, reset_after_ms=60_000, reserve=1
    )
    with pytest.raises(IdentifyLimitExceeded) as info:
        queue.check_capacity(3)
    assert info.value.remaining == 3 and "3 shard(s)" in str(info.value)
    assert "at most 2 may start" in str(info.value)
    queue.check_capacity(2)
    for shard in range(2):
        async with queue.slot(shard):
            pass
    with pytest.raises(IdentifyLimitExceeded):
        async with queue.slot(2):
            pass
    assert queue.remaining == 1


async def test_send_limiter_keeps_reserve_for_priority() -> None:
    limiter = SendLimiter(limit=5, window=0.3, reserved=2)
    for _ in range(3):
        await limiter.acquire()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(limiter.acquire(), 0.05)
    assert limiter.try_acquire_priority()
    assert limiter.try_acquire_priority()
    assert not limiter.try_acquire_priority()
    await asyncio.wait_for(limiter.acquire(), 1.0)  # the window slides


def test_zlib_stream_joins_frames_until_sync_flush() -> None:
    compressor = zlib.compressobj()
    decoder = _ZlibStream()
    for payload in (b'{"op":10}', b'{"op":11}' * 50):
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert decoder.feed(data[:3]) is None
        assert decoder.feed(data[3:]) == payload


def test_zlib_stream_when_corrupt_raises_transport_error() -> None:
    # zlib-ng raises its own error type; either must reach the shard as a TransportError.
    with pytest.raises(TransportError, match="corrupt"):
        _ZlibStream().feed(b"definitely not zlib\x00\x00\xff\xff")


def test_zstd_stream_decodes_flushed_messages() -> None:
    compressor = zstandard.ZstdCompressor().compressobj()
    decoder = _ZstdStream()
    for payload in (b'{"op":10}', b'{"op":0}' * 40):
        data = compressor.compress(payload) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        assert decoder.feed(data) == payload


def test_zstd_stream_when_corrupt_raises_transport_error() -> None:
    # A TransportError makes the shard reconnect; any other error would stop it for good.
    with pytest.raises(TransportError, match="corrupt"):
        _ZstdStream().feed(b"definitely not zstd")


def test_build_gateway_url() -> None:
    assert (
        build_gateway_url("wss://gateway.discord.gg", "zlib-stream")
        == "wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream"
    )
    assert (
        build_gateway_url("ws://h:1/gateway?v=9", "none") == "ws://h:1/gateway?v=10&encoding=json"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"op": 2, "d": {"token": "x"}}', "opcode 2"),
        (b'{"op": 3, "d": {"s": "' + b"x" * 5000 + b'"}}', "4096"),
        (b"not json", "JSON"),
        (b'{"op": 8, "d": [1]}', "object"),
        (b'{"op": 3, "d": {"status": "online"}}', "malformed"),
    ],
)
def test_validate_command_body_rejects(body: bytes, reason: str) -> None:
    with pytest.raises(DeadLetter) as info:
        validate_command_body(body)
    assert reason in info.value.reason


def test_validate_command_body_accepts_allowed_ops() -> None:
    for body in (
        b'{"op": 3, "d": {"since": null, "activities": [], "status": "dnd", "afk": false}}',
        b'{"op": 4, "d": {"guild_id": "1", "channel_id": null, "self_mute": false, '
        b'"self_deaf": false}}',
        b'{"op": 8, "d": {"guild_id": "1", "user_ids": ["2"], "limit": 0}}',
        b'{"op": 31, "d": {"guild_ids": ["1"]}}',
    ):
        # Re-encoded from what was validated: the same JSON, not necessarily the same bytes.
        assert json.loads(validate_command_body(body)) == json.loads(body)


async def test_file_session_store_round_trip_and_ttl(tmp_path: Path) -> None:
    store = FileSessionStore(tmp_path / "s.json", ttl=60)
    state = SessionState(
        shard_id=1,
        shard_count=2,
        session_id="abc",
        seq=42,
        resume_gateway_url="ws://x",
        saved_at=time.time(),
    )
    await store.save(state)
    assert await store.load(1, 2) == state
    assert await store.load(1, 3) is None  # another shard count: useless
    assert await store.load(0, 2) is None
    old = SessionState(
        shard_id=0,
        shard_count=2,
        session_id="old",
        seq=1,
        resume_gateway_url="ws://x",
        saved_at=time.time() - 120,
    )
    await store.save(old)
    assert await store.load(0, 2) is None  # expired


def test_public_api_is_exported() -> None:
    import spectacles.gateway as gateway

    for name in gateway.__all__:
        assert hasattr(gateway, name), name
    assert {"GatewayService", "Shard", "GatewayConfig", "load_config"} <= set(gateway.__all__)


def test_gateway_connections_honour_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy("wss://gateway.discord.gg") is None
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("http_proxy", "http://plain.internal:3128")
    monkeypatch.setenv("no_proxy", "localhost,sim")
    assert env_proxy("wss://gateway.discord.gg") == "http://proxy.internal:3128"
    assert env_proxy("ws://gateway.example") == "http://plain.internal:3128"
    assert env_proxy("ws://sim:8080/gateway") is None


async def test_gateway_bot_comes_from_the_rest_client() -> None:
    async with running_simulator(shards=3) as sim:
        bot = await fetch_gateway_bot(sim.api_url, TOKEN)
    assert bot.shards == 3 and bot.url.startswith("ws")


async def test_gateway_bot_with_a_wrong_token_names_the_fix() -> None:
    async with running_simulator() as sim:
        with pytest.raises(GatewayUnreachable, match=r"401 Unauthorized.*DISCORD_TOKEN"):
            await fetch_gateway_bot(sim.api_url, "not-the-token")


async def test_gateway_bot_unreachable_is_a_gateway_error() -> None:
    with pytest.raises(GatewayUnreachable, match="gateway/bot"):
        await fetch_gateway_bot("http://127.0.0.1:9/api/v10", TOKEN)
