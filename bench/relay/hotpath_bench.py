"""The gateway's own per-event cost on the relay hot path, without RabbitMQ or a websocket.

Drives `Shard._poll_events` (envelope decode, counters, and the hand-over to the relay: guild
id, headers, message_id, confirm tracking) with decoded websocket frames from memory and a
publisher stub that accepts every publish and confirms it at once. What the publisher itself
costs (frame encoding, the socket) is the same before and after a change to the shard or the
relay, so this isolates their share, with far less noise than the end-to-end figure 1.

    uv run python bench/relay/hotpath_bench.py [-n 200000] [--repeat 5]

Prints µs per event (median of the repeats, CPU time of this process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Mapping
from typing import Any

from spectacles.broker.publisher import PreparedPublish, Publisher
from spectacles.gateway import IdentifyQueue, Shard
from spectacles.gateway.config import GatewaySettings
from spectacles.models import Intents

MESSAGE = {
    "id": "1234567890123456789",
    "channel_id": "234567890123456789",
    "guild_id": "345678901234567890",
    "author": {"id": "456789012345678901", "username": "bench", "avatar": None, "bot": False},
    "content": "x" * 800,
    "timestamp": "2026-12-07T06:00:00.000000+00:00",
    "edited_timestamp": None,
    "tts": False,
    "mention_everyone": False,
    "mentions": [],
    "mention_roles": [],
    "attachments": [],
    "embeds": [],
    "pinned": False,
    "type": 0,
    "nonce": "1234567890123456789",
}


class _End(Exception):
    pass


class _Transport:
    def __init__(self, frames: list[bytes]) -> None:
        self._frames = iter(frames)

    async def receive(self) -> bytes:
        try:
            return next(self._frames)
        except StopIteration:
            raise _End from None


class _Publisher:
    """Accepts every publish and confirms it at once (the listener runs synchronously)."""

    events_exchange = "bench"
    unrouted_queue = "bench.unrouted"
    is_connected = True

    def __init__(self) -> None:
        self._real = Publisher.__new__(Publisher)
        self._real._events_exchange = "bench"  # prepare() only reads the exchange name

    def prepare(self, routing_key: str, **kwargs: Any) -> PreparedPublish:
        return self._real.prepare(routing_key, **kwargs)

    def try_submit_tracked(
        self,
        prepared: PreparedPublish,
        body: bytes,
        listener: Any,
        token: int,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        timestamp: float | None = None,
    ) -> bool:
        listener.publish_confirmed(token)
        return True

    async def submit_tracked(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover
        raise AssertionError("the window never fills here")

    async def wait_connected(self, timeout: float) -> None:  # pragma: no cover
        return None


def frames(n: int) -> list[bytes]:
    body = json.dumps(MESSAGE)
    return [
        b'{"op":0,"s":%d,"t":"MESSAGE_CREATE","d":%s}' % (seq, body.encode())
        for seq in range(1, n + 1)
    ]


async def one_pass(data: list[bytes]) -> float:
    shard = Shard(
        0,
        1,
        token="bench",
        intents=Intents.GUILD_MESSAGES,
        gateway_url="ws://127.0.0.1:1/",
        publisher=_Publisher(),  # type: ignore[arg-type]
        events=frozenset({"MESSAGE_CREATE"}),
        identify_queue=IdentifyQueue(interval=0.0),
        settings=GatewaySettings(),
    )
    shard._session_id = "bench-session"
    sink = getattr(shard, "sink", None)
    if sink is not None:
        sink.session("bench-session")
    started = time.process_time()
    with contextlib.suppress(_End):
        await shard._poll_events(_Transport(data))  # type: ignore[arg-type]
    return (time.process_time() - started) / len(data) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = frames(args.n)
    results = [asyncio.run(one_pass(data)) for _ in range(args.repeat)]
    print(
        f"hot path: {statistics.median(results):.2f} µs/event (median of {args.repeat}; "
        f"each: {', '.join(f'{r:.2f}' for r in results)})"
    )


if __name__ == "__main__":
    main()
