"""Figures 1, 2, 3 and 6: relay throughput, its ceilings, latency, and the JavaScript original.

One simulator process (5 shards: ours on shard 0, the JavaScript gateway on shard 1, the
discarding sink on shard 2, the JavaScript gateway publishing persistent messages on shard 3, the
null relay on shard 4, so a flood reaches exactly one relay), one RabbitMQ group, one counting
consumer process. The contenders take turns within each round (gateway, ceiling, JavaScript,
JavaScript persistent, null relay), so machine noise hits them alike; the report takes the median
over rounds. The naive ceiling publishes a quarter of the events per pass (it is ~5x slower; its
rate is stable well before that). The null relay (`null_relay.py`: no inflate, no decode,
pre-built publishes with confirms) is the bound for any relay on this machine.

    uv run python bench/relay/relay_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import amqp  # noqa: E402
from common.gateway import start_gateway  # noqa: E402
from common.procs import Proc, stop_all  # noqa: E402
from common.rabbit import RabbitProcess  # noqa: E402
from common.sim import SimProc  # noqa: E402

MB = 1024 * 1024
_RABBIT: list[RabbitProcess | None] = [None]
_SIMULATOR: list[Proc | None] = [None]
LATENCY_RATE = 2000
OUR_SHARD, JS_SHARD, SINK_SHARD, JS_DURABLE_SHARD, NULL_SHARD, SHARDS = 0, 1, 2, 3, 4, 5


@dataclass
class Settings:
    amqp_url: str
    log_dir: Path
    n: int = 100_000
    ceiling_n: int = 25_000
    rounds: int = 2
    latency_seconds: float = 10.0
    latency_slices: int = 4
    warmup: int = 2_000
    js: bool = True
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @classmethod
    def for_mode(cls, amqp_url: str, log_dir: Path, quick: bool) -> Settings:
        if quick:
            return cls(
                amqp_url,
                log_dir,
                n=20_000,
                ceiling_n=10_000,
                rounds=1,
                latency_seconds=5.0,
                latency_slices=2,
                warmup=1_000,
            )
        return cls(amqp_url, log_dir)


def _python(script: str, *args: str) -> list[str]:
    return [sys.executable, str(BENCH / "relay" / script), *args]


def _consumer_timeout(n: int) -> float:
    return n / 1000 + 60


def _measure(
    consumer: Proc,
    proc: Proc,
    n: int,
    send: Callable[[], dict[str, Any]],
    *,
    latency: bool = False,
    sample: tuple[Path, int] | None = None,
) -> dict[str, Any]:
    """Arm the consumer for n messages, run `send`, and measure `proc` while they flow."""
    command = f"EXPECT {n} {_consumer_timeout(n):.0f}"
    if latency:
        command += " latency"
    if sample is not None:
        command += f" sample {sample[0]} {sample[1]}"
    consumer.send(command)
    consumer.wait_line("ARMED", 10)
    rabbit = _RABBIT[0]
    rabbit0 = rabbit.cpu_seconds() if rabbit is not None else float("nan")
    cpu0 = proc.cpu_seconds()
    consumer_cpu0 = consumer.cpu_seconds()
    simulator = _SIMULATOR[0]
    sim_cpu0 = simulator.cpu_seconds() if simulator is not None else 0.0
    proc.start_rss_sampling()
    started = time.time()
    sent = send()
    started = sent.pop("_start", started)
    got = json.loads(consumer.wait_line("DONE", _consumer_timeout(n) + 30, watch=proc))
    cpu = proc.cpu_seconds() - cpu0
    consumer_cpu = consumer.cpu_seconds() - consumer_cpu0
    sim_cpu = (simulator.cpu_seconds() if simulator is not None else 0.0) - sim_cpu0
    rabbit_cpu = (rabbit.cpu_seconds() if rabbit is not None else float("nan")) - rabbit0
    peak = proc.stop_rss_sampling()
    count = got["count"]
    seconds = (got["last"] - started) if count else float("nan")
    result: dict[str, Any] = {
        "n": n,
        "received": count,
        "complete": count >= n,
        "seconds": seconds,
        "rate": count / seconds if count and seconds > 0 else 0.0,
        "cpu_s": cpu,
        "cpu_s_per_100k": cpu / max(count, 1) * 100_000,
        "rabbit_cpu_s_per_100k": rabbit_cpu / max(count, 1) * 100_000,
        "consumer_cpu_s_per_100k": consumer_cpu / max(count, 1) * 100_000,
        "simulator_cpu_s_per_100k": sim_cpu / max(count, 1) * 100_000,
        "all_cpu_s_per_100k": (cpu + rabbit_cpu + consumer_cpu + sim_cpu) / max(count, 1) * 100_000,
        "peak_rss_mb": peak / MB,
        "sender": sent,
    }
    if latency:
        result["latency_ms"] = got.get("latency_ms")
    return result


def _merge_latency(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One latency row from the slices of one contender: percentiles over every event."""
    values = sorted(v for p in parts for v in (p.get("latency_ms") or {}).pop("values", []))

    def q(f: float) -> float:
        return values[min(len(values) - 1, round(f * (len(values) - 1)))] if values else math.nan

    return {
        "n": sum(p["n"] for p in parts),
        "received": sum(p["received"] for p in parts),
        "rate": _median([p["rate"] for p in parts]),
        "cpu_s_per_100k": _median([p["cpu_s_per_100k"] for p in parts]),
        "slices": len(parts),
        "slice_p99_ms": [round((p.get("latency_ms") or {}).get("p99", math.nan), 1) for p in parts],
        "latency_ms": {
            "n": len(values),
            "p50": q(0.50),
            "p90": q(0.90),
            "p99": q(0.99),
            "max": values[-1] if values else math.nan,
            "mean": sum(values) / len(values) if values else math.nan,
        },
    }


def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def _summarise(passes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rate": _median([p["rate"] for p in passes]),
        "rates": [round(p["rate"], 1) for p in passes],
        "cpu_s_per_100k": _median([p["cpu_s_per_100k"] for p in passes]),
        "rabbit_cpu_s_per_100k": _median([p["rabbit_cpu_s_per_100k"] for p in passes]),
        "consumer_cpu_s_per_100k": _median([p["consumer_cpu_s_per_100k"] for p in passes]),
        "simulator_cpu_s_per_100k": _median([p["simulator_cpu_s_per_100k"] for p in passes]),
        "all_cpu_s_per_100k": _median([p["all_cpu_s_per_100k"] for p in passes]),
        "peak_rss_mb": max((p["peak_rss_mb"] for p in passes), default=float("nan")),
        "complete": all(p["complete"] for p in passes),
    }


def run(settings: Settings) -> dict[str, Any]:
    """Every relay figure; failures of one contender are recorded, the others still run."""
    s = settings
    group = f"bench-{s.run_id}-relay"
    queue = f"{group}.count"
    log_dir = s.log_dir
    out: dict[str, Any] = {
        "settings": {
            "n": s.n,
            "ceiling_n": s.ceiling_n,
            "rounds": s.rounds,
            "latency_rate": LATENCY_RATE,
            "latency_seconds": s.latency_seconds,
            "latency_slices": s.latency_slices,
            "warmup": s.warmup,
            "group": group,
        },
        "errors": {},
    }
    bodies = log_dir / "relayed-bodies.json"
    _RABBIT[0] = RabbitProcess.find(s.amqp_url)
    procs: dict[str, Proc] = {}
    try:
        sim = SimProc(log_dir, shards=SHARDS, guilds=SHARDS, identify_interval=0.5)
        procs["simulator"] = sim.proc
        _SIMULATOR[0] = sim.proc
        consumer = Proc(
            "consumer",
            _python("consumer.py", "--amqp-url", s.amqp_url, "--exchange", group, "--queue", queue),
            log_dir,
            stdin_pipe=True,
        )
        procs["consumer"] = consumer
        consumer.wait_line("READY", 30)

        # -- the simulator's own send rate ---------------------------------------------------
        try:
            sink = Proc(
                "sink",
                _python(
                    "sink.py",
                    "--api-url",
                    sim.api_url,
                    "--shard",
                    str(SINK_SHARD),
                    "--shards",
                    str(SHARDS),
                ),
                log_dir,
            )
            sink.wait_line("READY", 30)
            sim_cpu0 = sim.proc.cpu_seconds()
            flood = sim.flood(s.n, shard=SINK_SHARD)
            sim_cpu = sim.proc.cpu_seconds() - sim_cpu0
            out["simulator_send"] = {
                "n": flood["sent"],
                "seconds": flood["seconds"],
                "rate": flood["rate"],
                "cpu_s_per_100k": sim_cpu / max(flood["sent"], 1) * 100_000,
            }
            sink.stop()
        except Exception as exc:
            out["errors"]["simulator_send"] = repr(exc)

        # -- start the contenders ----------------------------------------------------------------
        gateway = start_gateway(
            log_dir,
            name="gateway",
            group=group,
            amqp_url=s.amqp_url,
            api_url=sim.api_url,
            shard_count=SHARDS,
            shard_ids=str(OUR_SHARD),
            identify_interval=0.5,
        )
        procs["gateway"] = gateway
        sim.wait_shards(1, 60, watch=gateway)
        time.sleep(2)
        out["gateway_idle_rss_mb"] = gateway.rss_bytes() / MB
        out["gateway_warmup"] = _measure(
            consumer,
            gateway,
            s.warmup,
            lambda: sim.flood(s.warmup, shard=OUR_SHARD),
            sample=(bodies, 256),
        )

        ceiling = Proc(
            "ceiling",
            _python(
                "ceiling.py",
                "--amqp-url",
                s.amqp_url,
                "--exchange",
                group,
                "--bodies",
                str(bodies),
            ),
            log_dir,
            stdin_pipe=True,
        )
        procs["ceiling"] = ceiling
        out["ceiling_bodies"] = json.loads(ceiling.wait_line("READY", 30))["bodies"]
        with contextlib.suppress(OSError, ValueError):
            sample = json.loads(bodies.read_text(encoding="utf-8"))
            out["relayed_body_bytes"] = sum(len(b.encode()) for b in sample) / max(len(sample), 1)

        def ceiling_send(n: int, rate: float | None = None) -> dict[str, Any]:
            ceiling.send(f"GO {n}" + (f" {rate}" if rate else ""))
            done: dict[str, Any] = json.loads(ceiling.wait_line("DONE", _consumer_timeout(n)))
            done["_start"] = done["start"]
            return done

        _measure(consumer, ceiling, s.warmup, lambda: ceiling_send(s.warmup))

        js_procs: dict[str, Proc] = {}
        js_shards = {"js": JS_SHARD, "js_persistent": JS_DURABLE_SHARD}
        for key, shard in js_shards.items() if s.js else ():
            proc: Proc | None = None
            try:
                proc = _start_js(s, log_dir, sim, group, shard=shard, persistent=key != "js")
                procs[key] = proc
                out[f"{key}_info"] = json.loads(proc.wait_line("READY", 30))
                sim.wait_shards(2 + len(js_procs), 60, watch=proc)
                time.sleep(2)
                out[f"{key}_idle_rss_mb"] = proc.rss_bytes() / MB
                _measure(consumer, proc, s.warmup, partial(sim.flood, s.warmup, shard=shard))
                js_procs[key] = proc
            except Exception as exc:
                out["errors"][key] = repr(exc)
                if proc is not None:
                    proc.stop()

        null: Proc | None = None
        try:
            null = _start_null(s, log_dir, sim, group, bodies)
            procs["null"] = null
            out["null_info"] = json.loads(null.wait_line("READY", 60))
            _measure_null(consumer, null, sim, s.warmup)
        except Exception as exc:
            out["errors"]["null"] = repr(exc)
            if null is not None:
                null.stop()
                null = None

        # -- figures 1, 2, 6: throughput, contenders taking turns --------------------------------
        passes: dict[str, list[dict[str, Any]]] = {
            "gateway": [],
            "ceiling": [],
            "js": [],
            "js_persistent": [],
            "null": [],
        }
        for _ in range(s.rounds):
            for name in passes:
                try:
                    if name == "gateway":
                        passes[name].append(
                            _measure(
                                consumer,
                                gateway,
                                s.n,
                                lambda: sim.flood(s.n, shard=OUR_SHARD),
                            )
                        )
                    elif name == "ceiling":
                        passes[name].append(
                            _measure(
                                consumer, ceiling, s.ceiling_n, lambda: ceiling_send(s.ceiling_n)
                            )
                        )
                    elif name == "null" and null is not None:
                        passes[name].append(_measure_null(consumer, null, sim, s.n))
                    elif name in js_procs:
                        shard = js_shards[name]
                        passes[name].append(
                            _measure(
                                consumer,
                                js_procs[name],
                                s.n,
                                partial(sim.flood, s.n, shard=shard),
                            )
                        )
                except Exception as exc:
                    out["errors"][f"throughput_{name}"] = repr(exc)
        out["passes"] = passes
        out["throughput"] = {name: _summarise(p) for name, p in passes.items() if p}

        # -- figure 3: latency at a fixed rate, contenders taking turns in short slices ----------
        slices = s.latency_slices
        m = int(LATENCY_RATE * s.latency_seconds / slices)
        senders: dict[str, tuple[Proc, Callable[[], dict[str, Any]]]] = {
            "gateway": (gateway, lambda: sim.flood(m, rate=LATENCY_RATE, shard=OUR_SHARD)),
            "ceiling": (ceiling, lambda: ceiling_send(m, LATENCY_RATE)),
        }
        for key, proc in js_procs.items():
            senders[key] = (
                proc,
                partial(sim.flood, m, rate=LATENCY_RATE, shard=js_shards[key]),
            )
        slices_of: dict[str, list[dict[str, Any]]] = {name: [] for name in senders}
        for _ in range(slices):
            for name, (proc, send) in senders.items():
                try:
                    slices_of[name].append(_measure(consumer, proc, m, send, latency=True))
                except Exception as exc:
                    out["errors"][f"latency_{name}"] = repr(exc)
        out["latency"] = {name: _merge_latency(parts) for name, parts in slices_of.items() if parts}
    except Exception as exc:
        out["errors"]["relay"] = repr(exc)
    finally:
        for name in ("null", "js", "js_persistent", "ceiling", "gateway", "consumer", "simulator"):
            proc = procs.get(name)
            if proc is not None:
                proc.stop()
        exchanges, queues = amqp.derived_names(group, shards=SHARDS)
        amqp.cleanup(s.amqp_url, exchanges, [*queues, queue])
    return out


def _start_null(s: Settings, log_dir: Path, sim: SimProc, group: str, bodies: Path) -> Proc:
    """The null relay on its own shard, publishing the relayed bodies (token via the env)."""
    argv = _python(
        "null_relay.py",
        "--api-url",
        sim.api_url,
        "--shard",
        str(NULL_SHARD),
        "--shards",
        str(SHARDS),
        "--amqp-url",
        s.amqp_url,
        "--exchange",
        group,
        "--bodies",
        str(bodies),
    )
    env = {"DISCORD_TOKEN": sim.token}
    return Proc("null-relay", argv, log_dir, env=env, stdin_pipe=True)


def _measure_null(consumer: Proc, null: Proc, sim: SimProc, n: int) -> dict[str, Any]:
    """One null relay pass: arm it for exactly n frames, flood, check its own counts."""

    def send() -> dict[str, Any]:
        null.send(f"ARM {n}")
        null.wait_line("ARMED", 30)
        start = time.time()
        return {**sim.flood(n, shard=NULL_SHARD), "_start": start}

    result = _measure(consumer, null, n, send)
    done: dict[str, Any] = json.loads(null.wait_line("DONE", 60))
    result["relay"] = done
    if done["frames"] != n or done["published"] != n or done["nacked"] or done["stray"]:
        raise RuntimeError(f"null relay pass of {n} not exact: {done}")
    return result


def _ensure_js_installed(js_dir: Path) -> None:
    """`npm ci` from the committed lock file the first time (node_modules is git-ignored)."""
    if (js_dir / "node_modules" / "@spectacles" / "gateway").exists():
        return
    if shutil.which("npm") is None:
        raise RuntimeError("Node.js/npm not installed: figure 6 needs node 20 and npm")
    done = subprocess.run(
        ["npm", "ci", "--legacy-peer-deps", "--no-audit", "--no-fund"],
        cwd=js_dir,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm ci failed in bench/js: {done.stderr[-800:]}")


def _start_js(
    s: Settings, log_dir: Path, sim: SimProc, group: str, *, shard: int, persistent: bool
) -> Proc:
    js_dir = BENCH / "js"
    _ensure_js_installed(js_dir)
    env = {
        "SIM_API_URL": sim.api_url,
        "DISCORD_TOKEN": sim.token,
        "AMQP_URL": s.amqp_url,
        "BROKER_GROUP": group,
        "DISCORD_SHARD_COUNT": str(SHARDS),
        "DISCORD_SHARD_IDS": str(shard),
        "BROKER_PERSISTENT": "1" if persistent else "0",
    }
    name = "js-gateway-persistent" if persistent else "js-gateway"
    return Proc(name, ["node", str(js_dir / "relay.js")], log_dir, env=env, cwd=js_dir)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--no-js", action="store_true")
    args = parser.parse_args()
    log_dir = BENCH / ".work" / time.strftime("relay-%Y%m%d-%H%M%S")
    settings = Settings.for_mode(args.amqp_url, log_dir, args.quick)
    settings.js = not args.no_js
    try:
        print(json.dumps(run(settings), indent=2, default=str))
    finally:
        stop_all()
        amqp.sweep(args.amqp_url, f"bench-{settings.run_id}")


if __name__ == "__main__":
    main()
