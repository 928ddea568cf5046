"""The simulator's own send rate: a websocket client that identifies and discards every frame.

It asks for zlib-stream like the relays, but never inflates or parses a frame after READY,
so a flood to it measures what the simulator can send, not what a client can take.
Prints ``READY`` once its session is identified; runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import zlib

import aiohttp


async def main_async(args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bot {args.token}"}
        async with http.get(args.api_url + "/gateway/bot", headers=headers) as response:
            url = (await response.json())["url"]
        inflate = zlib.decompressobj()
        ws_url = f"{url}?v=10&encoding=json&compress=zlib-stream"
        async with http.ws_connect(ws_url, max_msg_size=0) as ws:
            hello = json.loads(inflate.decompress((await ws.receive()).data))
            identify = {
                "op": 2,
                "d": {
                    "token": args.token,
                    "intents": (1 << 0) | (1 << 9) | (1 << 15),
                    "properties": {"os": "linux", "browser": "bench", "device": "bench"},
                    "shard": [args.shard, args.shards],
                },
            }
            await ws.send_str(json.dumps(identify))
            interval = hello["d"]["heartbeat_interval"] / 1000

            async def heartbeat() -> None:
                while True:
                    await asyncio.sleep(interval)
                    await ws.send_str('{"op":1,"d":null}')

            beat = asyncio.create_task(heartbeat())
            while True:  # inflate until READY, then stop looking at frames
                payload = json.loads(inflate.decompress((await ws.receive()).data))
                if payload.get("t") == "READY":
                    break
            print("READY", flush=True)
            frames = 0
            async for _ in ws:
                frames += 1
            beat.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token", default="sim-token")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
