"""Figure 7: gateway cluster failover, SIGKILL to every orphaned shard READY again.

For each run: a fresh simulator process with 12 shards and three gateway processes in auto mode
(`DISCORD_SHARD_IDS=auto`) in a group of their own, with the **default cluster timings** (no
`[cluster]` table: heartbeat 1 s, member timeout 3 s, lease timeout 2 s, settle 2 s) and the
amqp session store. Once the cluster is settled (4/4/4, every shard READY), the simulator floods
every live session at a steady rate (repeated `POST /_sim/flood {"count", "rate", "wait": true}`);
a few seconds in, one process is SIGKILLed. The survivors' `GET /cluster` is polled every 50 ms
until every shard the victim owned is READY in a survivor: that is the time to READY (as an
operator sees it; `/cluster` shows each member's last announcement, at most one heartbeat old).
The survivors' logs give the same per shard without that lag (`shard claimed`, `shard ready after
takeover`, wall clock). The flood goes on a few seconds, stops, and a queue bound to the group's
events exchange for MESSAGE_CREATE (bound before the flood, drained at the end) is counted:
unique message ids received vs flooded (lost must be 0) and duplicates (received - unique: what
the RESUMEs replayed that had been relayed already, since the last session save).

    uv run --frozen python bench/failover/failover_bench.py [--runs 3] [--save-interval 0.5]

Writes bench/results/failover-<date>.md and .json; `bench/run_all.py --only failover` runs the
same figure inside `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import amqp, machine  # noqa: E402
from common.gateway import start_gateway as common_start_gateway  # noqa: E402
from common.procs import Proc, stop_all  # noqa: E402
from common.report import render_failover  # noqa: E402
from common.sim import SimProc  # noqa: E402

from spectacles.gateway.cluster import cluster_exchange_name  # noqa: E402
from spectacles.gateway.fatal_block import fatal_block_queue_name, token_fingerprint  # noqa: E402
from spectacles.gateway.identify_lock import quota_queue_name  # noqa: E402
from spectacles.gateway.session_store import session_queue_name  # noqa: E402

SHARDS = 12
PROCESSES = ("a", "b", "c")
TOKEN = "sim-token"
# Identify pacing on both sides (not a cluster timing): 12 IDENTIFYs in ~6 s instead of 60 s.
IDENTIFY_INTERVAL = 0.5
POLL = 0.05
TARGET_S = 15.0  # issue 13: every orphaned shard READY within 15 s of the kill, nothing lost
DEFAULT_SAVE_INTERVAL = 5.0  # SessionStoreSettings.save_interval


@dataclass
class Settings:
    amqp_url: str
    log_dir: Path
    runs: int = 3
    rate: int = 250  # events/s per session
    round_events: int = 250  # per session per POST /flood (1 s at 250/s)
    before_s: float = 5.0  # flooding before the kill
    after_s: float = 5.0  # flooding after every orphaned shard is READY
    save_interval: float | None = None  # None: the gateway's default (5 s), not written
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("log_dir")
        data.pop("amqp_url")  # credentials stay out of the results
        data["save_interval_effective"] = (
            DEFAULT_SAVE_INTERVAL if self.save_interval is None else self.save_interval
        )
        data.update(
            shards=SHARDS,
            processes=len(PROCESSES),
            identify_interval=IDENTIFY_INTERVAL,
            poll_s=POLL,
            target_s=TARGET_S,
            cluster="defaults: heartbeat_interval 1 s, member_timeout 3 s, lease_timeout 2 s, "
            "lease_heartbeat 2 s, settle 2 s (takeover_delay = lease_timeout + 1 s = 3 s)",
        )
        return data


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Gateway:
    name: str
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_gateway(s: Settings, name: str, group: str, api_url: str) -> Gateway:
    """One gateway process in auto mode with default cluster timings, `/cluster` on a free port."""
    port = free_port()
    proc = common_start_gateway(
        s.log_dir,
        name=name,
        group=group,
        amqp_url=s.amqp_url,
        api_url=api_url,
        shard_count=SHARDS,
        shard_ids="auto",
        identify_interval=IDENTIFY_INTERVAL,
        metrics_port=port,
        session_store="amqp",
        save_interval=s.save_interval,
        log_level="INFO",
    )
    return Gateway(name, proc, port)


# ----------------------------------------------------------------------------- observation


async def view(http: aiohttp.ClientSession, gateway: Gateway) -> dict[str, Any] | None:
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        async with http.get(gateway.url + "/cluster") as response:
            if response.status == 200:
                found: dict[str, Any] = await response.json()
                return found
    return None


async def views(http: aiohttp.ClientSession, gateways: list[Gateway]) -> dict[str, dict[str, Any]]:
    answers = await asyncio.gather(*(view(http, g) for g in gateways))
    return {g.name: a for g, a in zip(gateways, answers, strict=True) if a is not None}


def own_shards(cluster_view: dict[str, Any]) -> dict[int, str]:
    """The shards (and states) a process announces as its own."""
    me = next((m for m in cluster_view.get("members", []) if m.get("self")), None)
    return {} if me is None else {int(k): str(v) for k, v in me["shards"].items()}


def settled(cluster_view: dict[str, Any], processes: int) -> bool:
    members = cluster_view.get("members", [])
    if cluster_view.get("starting") or len(members) != processes or cluster_view["unowned"]:
        return False
    counts = [len(m["shards"]) for m in members]
    states = [state for m in members for state in m["shards"].values()]
    return (
        sum(counts) == SHARDS
        and max(counts) - min(counts) <= 1
        and all(state == "ready" for state in states)
    )


async def wait_settled(
    http: aiohttp.ClientSession, gateways: list[Gateway], timeout: float
) -> tuple[float, dict[str, dict[str, Any]]]:
    """Until every process sees all of them, shares within one, every shard READY."""
    started = time.monotonic()
    last: dict[str, dict[str, Any]] = {}
    while time.monotonic() - started < timeout:
        for g in gateways:
            g.proc.check_alive()
        last = await views(http, gateways)
        if len(last) == len(gateways) and all(settled(v, len(gateways)) for v in last.values()):
            return time.monotonic() - started, last
        await asyncio.sleep(0.1)
    shares = {name: own_shards(v) for name, v in last.items()}
    raise TimeoutError(f"cluster not settled after {timeout:.0f}s; own shards: {shares}")


def log_events(gateway: Gateway, names: set[str]) -> list[dict[str, Any]]:
    """JSON log records of `gateway` whose event is in `names`."""
    found = []
    with contextlib.suppress(OSError), gateway.proc.log_path.open(errors="replace") as log:
        for line in log:
            start = line.find("{")
            if start < 0:
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line[start:])
                if isinstance(record, dict) and record.get("event") in names:
                    record["_gateway"] = gateway.name
                    found.append(record)
    return found


def wall(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()


# ----------------------------------------------------------------------------- the flood


class Flood:
    """MESSAGE_CREATEs to every live session in rounds until stopped; sums what was sent."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, count: int, rate: int) -> None:
        self._http = http
        self._url = base_url + "/_sim/flood"
        self._body = {"event": "MESSAGE_CREATE", "count": count, "rate": rate, "wait": True}
        self.sent = 0
        self.rounds = 0
        self.empty_rounds = 0  # no live session at that moment
        self.marks: list[tuple[float, int]] = []  # (monotonic end of a round, sent so far)
        self.started = 0.0
        self.stopped = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        self.stopped = time.monotonic()

    async def _run(self) -> None:
        while not self._stop.is_set():
            async with self._http.post(self._url, json=self._body) as response:
                if response.status != 200:
                    self.empty_rounds += 1
                    await response.read()
                    await asyncio.sleep(0.05)
                    continue
                result = await response.json()
            self.sent += int(result["sent"])
            self.rounds += 1
            self.marks.append((time.monotonic(), self.sent))


class Counting:
    """A queue bound to the events exchange for MESSAGE_CREATE; drained and counted at the end."""

    def __init__(self, amqp_url: str, group: str) -> None:
        self._url = amqp_url
        self._group = group
        self.name = f"{group}.failover-count"
        self.ids: Counter[str] = Counter()
        self.received = 0
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._last = 0.0

    async def bind(self) -> None:
        self._connection = await aio_pika.connect(self._url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=2000)
        exchange = await channel.get_exchange(self._group)  # passive: the gateways declared it
        self._queue = await channel.declare_queue(self.name, exclusive=True)
        await self._queue.bind(exchange, routing_key="MESSAGE_CREATE")

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.received += 1
        self.ids[message.message_id or ""] += 1
        self._last = time.monotonic()

    async def drain(self, expected: int, timeout: float) -> float:
        """Consume until `expected` unique ids arrived and 1 s passed without any; seconds taken."""
        assert self._queue is not None
        started = self._last = time.monotonic()
        await self._queue.consume(self._on_message, no_ack=True)
        while time.monotonic() - started < timeout:
            await asyncio.sleep(0.2)
            if len(self.ids) >= expected and time.monotonic() - self._last > 1.0:
                break
        return time.monotonic() - started

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()  # the exclusive queue goes with it


# ----------------------------------------------------------------------------- one run


async def sim_get(http: aiohttp.ClientSession, sim: SimProc, path: str) -> Any:
    async with http.get(sim.base_url + "/_sim" + path) as response:
        return await response.json()


async def kill_scenario(s: Settings, index: int, group: str, sim: SimProc) -> dict[str, Any]:
    out: dict[str, Any] = {"run": index + 1, "group": group}
    gateways = [
        start_gateway(s, f"gateway-failover{index + 1}-{n}", group, sim.api_url) for n in PROCESSES
    ]
    counting = Counting(s.amqp_url, group)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            out["settle_s"], before = await wait_settled(http, gateways, timeout=120)
            out["shares_before"] = sorted(len(own_shards(v)) for v in before.values())
            stats0 = await sim_get(http, sim, "/stats")
            await counting.bind()

            flood_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
            flood = Flood(flood_http, sim.base_url, s.round_events, s.rate)
            try:
                flood.start()
                await asyncio.sleep(s.before_s)
                victim = gateways[index % len(gateways)]
                survivors = [g for g in gateways if g is not victim]
                last = await view(http, victim)
                orphaned = sorted(own_shards(last or {}))
                if not orphaned:
                    raise RuntimeError(f"{victim.name} announced no shards before the kill")
                killed_wall = time.time()
                killed_at = time.monotonic()
                os.kill(victim.proc.popen.pid, signal.SIGKILL)
                # The rounds finished before the kill: the steady rate with every session.
                steady_at, steady_sent = flood.marks[-1] if flood.marks else (killed_at, 0)
                sent_at_kill = flood.sent
                out.update(victim=victim.name, orphaned=orphaned)

                first_seen: dict[int, float] = {}
                first_ready: dict[int, float] = {}
                ready_s: float | None = None
                while time.monotonic() - killed_at < 120:
                    seen = await views(http, survivors)
                    now = time.monotonic() - killed_at
                    states: dict[int, str] = {}
                    for v in seen.values():
                        states.update(own_shards(v))
                    for shard in orphaned:
                        if shard in states:
                            first_seen.setdefault(shard, now)
                        if states.get(shard) == "ready":
                            first_ready.setdefault(shard, now)
                    if orphaned and all(states.get(x) == "ready" for x in orphaned):
                        ready_s = now
                        break
                    for g in survivors:
                        g.proc.check_alive()
                    await asyncio.sleep(POLL)
                if ready_s is None:
                    raise TimeoutError(f"orphaned shards not READY after 120 s: {first_ready}")
                out["ready_s"] = ready_s
                out["first_claimed_s"] = min(first_seen.values())
                out["per_shard_ready_s"] = {str(k): round(v, 3) for k, v in first_ready.items()}
                await asyncio.sleep(s.after_s)
            finally:
                await flood.stop()
                await flood_http.close()
            out["flood"] = {
                "sent": flood.sent,
                "sent_before_kill": sent_at_kill,
                "rate_before_kill": steady_sent / max(steady_at - flood.started, 1e-9),
                "seconds": flood.stopped - flood.started,
                "rate": flood.sent / (flood.stopped - flood.started),
                "rounds": flood.rounds,
                "empty_rounds": flood.empty_rounds,
            }
            out["drain_s"] = await counting.drain(flood.sent, timeout=120)
            unique = len(counting.ids)
            out.update(
                received=counting.received,
                unique=unique,
                lost=max(0, flood.sent - unique),
                unexpected=max(0, unique - flood.sent),
                duplicates=counting.received - unique,
            )

            stats = await sim_get(http, sim, "/stats")
            out["flood"]["simulator_flood_sent"] = stats.get("flood_sent", 0) - stats0.get(
                "flood_sent", 0
            )
            out.update(
                identifies=stats["identifies"],
                identify_attempts=stats.get("identify_attempts"),
                resumes=stats["resumes"],
                resumes_after_kill=stats["resumes"] - stats0["resumes"],
                shard_overlaps=stats["shard_overlaps"],
            )
            sessions = await sim_get(http, sim, "/sessions")
            live = Counter(x["shard"][0] for x in sessions if x["connected"])
            out["one_session_per_shard"] = live == {i: 1 for i in range(SHARDS)}
            after = await views(http, survivors)
            out["shares_after"] = sorted(len(own_shards(v)) for v in after.values())

            # The same moments from the survivors' own logs: no announcement lag.
            records = [
                r
                for g in survivors
                for r in log_events(g, {"shard claimed", "shard ready after takeover"})
                if r.get("shard_id") in orphaned and wall(r) >= killed_wall
            ]
            claimed = [wall(r) - killed_wall for r in records if r["event"] == "shard claimed"]
            ready = [
                wall(r) - killed_wall for r in records if r["event"] == "shard ready after takeover"
            ]
            out["log"] = {
                "kinds": sorted({str(r.get("kind")) for r in records}),
                "claimed_s": [round(x, 3) for x in sorted(claimed)],
                "ready_s": [round(x, 3) for x in sorted(ready)],
                "all_ready_s": max(ready) if len(ready) == len(orphaned) else None,
                "takeover_s": [
                    round(float(r["seconds"]), 3)
                    for r in records
                    if r["event"] == "shard ready after takeover"
                ],
            }
        finally:
            await counting.close()
            for g in gateways:
                g.proc.stop(grace=10.0)
    return out


def broker_names(group: str) -> tuple[list[str], list[str]]:
    """(exchanges, queues) one run's gateways and counter declared."""
    exchanges = [group, f"{group}.dlx", f"{group}.commands", cluster_exchange_name(group, SHARDS)]
    queues = [f"{group}.failover-count", f"{group}.oversize", f"{group}.unrouted"]
    for shard in range(SHARDS):
        queues += [
            f"{group}.commands.shard.{shard}",
            f"{group}.commands.shard.{shard}.dead",
            session_queue_name(group, shard),
        ]
    fingerprint = token_fingerprint(TOKEN)
    queues += [fatal_block_queue_name(group, fingerprint), quota_queue_name(group, fingerprint)]
    return exchanges, queues


def one_run(s: Settings, index: int) -> dict[str, Any]:
    group = f"bench-{s.run_id}-failover{index + 1}"
    sim: SimProc | None = None
    try:
        sim = SimProc(
            s.log_dir,
            name=f"simulator-failover{index + 1}",
            shards=SHARDS,
            guilds=SHARDS,
            max_concurrency=1,
            identify_interval=IDENTIFY_INTERVAL,
            token=TOKEN,
        )
        return asyncio.run(kill_scenario(s, index, group, sim))
    finally:
        if sim is not None:
            sim.stop()
        exchanges, queues = broker_names(group)
        amqp.cleanup(s.amqp_url, exchanges, queues)


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ready = [r["ready_s"] for r in runs if r.get("ready_s") is not None]
    log_ready = [r["log"]["all_ready_s"] for r in runs if (r.get("log") or {}).get("all_ready_s")]
    complete = [r for r in runs if "lost" in r]
    lost = sum(r["lost"] for r in complete)
    ok = (
        bool(complete)
        and len(complete) == len(runs)
        and all(x <= TARGET_S for x in ready)
        and lost == 0
        and all(r["identifies"] == SHARDS for r in complete)
    )
    return {
        "runs": len(runs),
        "completed": len(complete),
        "ready_s": _spread(ready),
        "log_ready_s": _spread(log_ready),
        "lost": lost,
        "duplicates": [r["duplicates"] for r in complete],
        "flooded": [r["flood"]["sent"] for r in complete],
        "identifies": [r["identifies"] for r in complete],
        "resumes_after_kill": [r["resumes_after_kill"] for r in complete],
        "shard_overlaps": [r["shard_overlaps"] for r in complete],
        "target_met": ok,
    }


def run(
    amqp_url: str,
    log_dir: Path,
    *,
    runs: int = 3,
    run_id: str | None = None,
    save_interval: float | None = None,
    rate: int = 250,
) -> dict[str, Any]:
    s = Settings(amqp_url, log_dir, runs=runs, save_interval=save_interval, rate=rate)
    if run_id:
        s.run_id = run_id
    s.round_events = max(1, rate)
    out: dict[str, Any] = {"settings": s.public(), "runs": [], "errors": {}}
    for index in range(runs):
        print(f"[failover] run {index + 1}/{runs} ...", flush=True)
        try:
            result = one_run(s, index)
        except Exception as exc:
            out["errors"][f"run {index + 1}"] = repr(exc)
            out["runs"].append({"run": index + 1, "error": repr(exc)})
            print(f"[failover] run {index + 1} FAILED: {exc!r}", flush=True)
        else:
            out["runs"].append(result)
            print(
                f"[failover] run {index + 1}: READY {result['ready_s']:.2f} s after the kill, "
                f"lost {result['lost']}, duplicates {result['duplicates']}, "
                f"identifies {result['identifies']}, resumes {result['resumes_after_kill']}",
                flush=True,
            )
        finally:
            stop_all()
    out["summary"] = summarize([r for r in out["runs"] if "error" not in r] or out["runs"])
    out["summary"]["runs"] = runs
    swept = amqp.sweep(amqp_url, f"bench-{s.run_id}-failover")
    out["leftovers_swept"] = swept
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="kill scenarios (fresh cluster each)")
    parser.add_argument("--rate", type=int, default=250, help="flood events/s per session")
    parser.add_argument(
        "--save-interval",
        type=float,
        default=None,
        help="session_store.save_interval in s (default: not set, the gateway's 5 s)",
    )
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL") or "amqp://guest:guest@localhost:5672/"
    )
    parser.add_argument("--output", type=Path, default=None, help="results file (.md)")
    args = parser.parse_args()
    run_id = uuid.uuid4().hex[:8]
    log_dir = BENCH / ".work" / time.strftime(f"failover-%Y%m%d-%H%M%S-{run_id}")
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "run_id": run_id,
        "command": "uv run --frozen python bench/failover/failover_bench.py"
        + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine.info(),
    }
    started = time.monotonic()
    try:
        results["failover"] = run(
            args.amqp_url,
            log_dir,
            runs=args.runs,
            run_id=run_id,
            save_interval=args.save_interval,
            rate=args.rate,
        )
    finally:
        stop_all()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    output = args.output or BENCH / "results" / f"failover-{time.strftime('%Y-%m-%d')}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_failover(results), encoding="utf-8")
    output.with_suffix(".json").write_text(
        json.dumps(results, indent=2, default=str), encoding="utf-8"
    )
    print(render_failover(results))
    print(f"[failover] results: {output}")
    print(f"[failover] logs:    {log_dir}")


if __name__ == "__main__":
    main()
