"""Run the Discord simulator in its own process (so its CPU is not the relay's).

Prints ``READY {"base_url": ..., "api_url": ...}`` once listening, serves until SIGTERM/SIGINT.
Uses the simulator's Python API so the benchmark can set identify timings directly; this is the
same server `spectacles-sim` starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from spectacles.simulator import Simulator, SimulatorConfig


async def serve(args: argparse.Namespace) -> None:
    config = SimulatorConfig(
        token=args.token,
        guilds=args.guilds,
        members_per_guild=args.members,
        shards=args.shards,
        max_concurrency=args.max_concurrency,
        identify_interval=args.identify_interval,
        replay_buffer_size=args.replay_buffer,
        session_start_total=100_000,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Simulator(config, host="127.0.0.1", port=args.port) as sim:
        info = {"base_url": sim.base_url, "api_url": sim.api_url, "gateway_url": sim.gateway_url}
        print("READY " + json.dumps(info), flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="sim-token")
    parser.add_argument("--guilds", type=int, default=2)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--identify-interval", type=float, default=5.0)
    parser.add_argument("--replay-buffer", type=int, default=20_000)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("uvloop missing, using asyncio", file=sys.stderr)
        else:
            uvloop.run(serve(args))
            return
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
