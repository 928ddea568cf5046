"""Flood benchmark: how many ~1 KB MESSAGE_CREATEs per second the simulator sends to ONE
zlib-stream connection.

The simulator runs in this process; the client runs in a separate process (so its CPU does not
count against the server): it identifies, then counts frames and inflates each one through the
connection's single zlib context (as a real client must), checking the last payload parses.

Two figures:
- server rate: events / time the simulator took to generate, compress and write them
  (`POST /_sim/flood` with wait; the simulator waits whenever the client falls behind, so this
  can never exceed what the client absorbs by more than the socket buffers);
- end-to-end rate: events / time from the first to the last frame the client received.

Run: ``uv run python bench/simulator/flood_bench.py [-n 200000] [--output FILE.md]``.
Import: ``async def run(n=200_000) -> dict`` for ``bench/run_all.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import struct
import subprocess
import sys
import time
import urllib.parse
import zlib
from typing import Any

from spectacles.simulator import Simulator, SimulatorConfig

TOKEN = "bench-token"
INTENTS = 1 | 512 | 32768  # GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT


# -- client process ---------------------------------------------------------------------------


def _masked_text_frame(payload: bytes) -> bytes:
    """Clients must mask their frames (RFC 6455)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    header = (
        bytes((0x81, 0x80 | length)) if length < 126 else struct.pack("!BBH", 0x81, 0xFE, length)
    )
    return header + mask + masked


async def _client(url: str, n: int) -> None:
    """A raw websocket reader: parses frames itself and inflates each read chunk in one call.

    aiohttp's client costs tens of microseconds per message in Python, which would make the
    client, not the simulator, the thing measured.
    """
    parsed = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port, limit=1 << 22)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {parsed.path}?{parsed.query} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake failed: {head!r}")
    inflate = zlib.decompressobj()
    identify = {"op": 2, "d": {"token": TOKEN, "intents": INTENTS, "properties": {}}}
    writer.write(_masked_text_frame(json.dumps(identify).encode()))
    buffer = bytearray()
    count = frames = wire_bytes = raw_bytes = 0
    first = last = 0.0
    identified = False
    tail = b""
    marker = b'{"t":"MESSAGE_CREATE"'
    while count < n:
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise RuntimeError("connection closed")
        buffer += chunk
        pos, size, payloads = 0, len(buffer), []
        while size - pos >= 2:
            b0, b1 = buffer[pos], buffer[pos + 1]
            length, header = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = struct.unpack_from("!H", buffer, pos + 2)[0], 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = struct.unpack_from("!Q", buffer, pos + 2)[0], 10
            if size - pos < header + length:
                break
            if b0 & 0x0F == 0x8:
                raise RuntimeError(
                    f"server closed: {bytes(buffer[pos + header : pos + header + length])!r}"
                )
            payloads.append(buffer[pos + header : pos + header + length])
            pos += header + length
            frames += 1
        del buffer[:pos]
        if not payloads:
            continue
        data = b"".join(payloads)
        wire_bytes += len(data)
        text = inflate.decompress(data)
        raw_bytes += len(text)
        found = text.count(marker)
        if found:
            if count == 0:
                first = time.perf_counter()
            count += found
            last = time.perf_counter()
            tail = text
        elif not identified and b'"t":"READY"' in text:
            identified = True
            print("IDENTIFIED", flush=True)
    event = json.loads(tail[tail.rindex(marker) :])
    assert event["t"] == "MESSAGE_CREATE" and event["d"]["content"], event
    writer.close()
    print(
        "RESULT "
        + json.dumps(
            {
                "received": count,
                "frames": frames,
                "seconds": last - first,
                "avg_payload_bytes": raw_bytes / max(frames, 1),
                "avg_wire_bytes": wire_bytes / max(frames, 1),
                "last_seq": event["s"],
            }
        ),
        flush=True,
    )


# -- server side ------------------------------------------------------------------------------


async def _read_line(proc: asyncio.subprocess.Process, prefix: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"client did not print {prefix!r}")
        line = (await asyncio.wait_for(proc.stdout.readline(), left)).decode()
        if not line:
            raise RuntimeError(f"client exited before printing {prefix!r}")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()


async def run(n: int = 200_000) -> dict[str, Any]:
    """Flood one zlib-stream connection with `n` events; the figures as a JSON-able dict."""
    config = SimulatorConfig(token=TOKEN, guilds=1, identify_interval=0, replay_buffer_size=20_000)
    async with Simulator(config) as sim:
        url = f"{sim.gateway_url}?v=10&encoding=json&compress=zlib-stream"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client",
            url,
            "-n",
            str(n),
            stdout=subprocess.PIPE,
        )
        try:
            await _read_line(proc, "IDENTIFIED", 30)
            cpu = time.process_time()
            flood = await sim.flooder.flood(n, event="MESSAGE_CREATE")
            cpu = time.process_time() - cpu
            client = json.loads(await _read_line(proc, "RESULT", 600))
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    return {
        "events": n,
        "server_seconds": round(flood.seconds, 3),
        "server_rate": round(n / flood.seconds),
        "server_cpu_us_per_event": round(cpu / n * 1e6, 2),
        "server_rate_per_cpu_second": round(n / cpu),
        "end_to_end_seconds": round(client["seconds"], 3),
        "end_to_end_rate": round(client["received"] / client["seconds"]),
        "avg_payload_bytes": round(client["avg_payload_bytes"]),
        "avg_wire_bytes": round(client["avg_wire_bytes"], 1),
        "received": client["received"],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": (
            f"{platform.machine()} {os.cpu_count()} CPU(s), Python {platform.python_version()}"
        ),
    }


def _markdown(results: list[dict[str, Any]], command: str) -> str:
    best = max(results, key=lambda r: r["server_rate"])
    lines = [
        "# Simulator flood benchmark",
        "",
        f"- Date: {time.strftime('%Y-%m-%d')}",
        f"- Machine: {best['machine']} (shared with other jobs; figures are noisy)",
        f"- Command: `{command}`",
        "- What: ~1 KB MESSAGE_CREATE dispatches to ONE connection with zlib-stream; the client "
        "(a separate process) inflates every frame through one shared zlib context.",
        "",
        "| run | events | server s | server events/s | events per server CPU-s "
        "| end-to-end events/s | payload B | wire B | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        lines.append(
            f"| {i} | {r['events']} | {r['server_seconds']} | {r['server_rate']:,} | "
            f"{r['server_rate_per_cpu_second']:,} | {r['end_to_end_rate']:,} | "
            f"{r['avg_payload_bytes']} | {r['avg_wire_bytes']} | {r['load_average_1m']} |"
        )
    lines += ["", f"Best server rate: **{best['server_rate']:,} events/s**.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="events per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", help="write a markdown report here")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(_client(args.client, args.n))
        return
    results = []
    for _ in range(args.runs):
        result = asyncio.run(run(args.n))
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.output:
        command = "uv run python bench/simulator/flood_bench.py " + " ".join(sys.argv[1:])
        with open(args.output, "w") as fh:
            fh.write(_markdown(results, command))


if __name__ == "__main__":
    main()
