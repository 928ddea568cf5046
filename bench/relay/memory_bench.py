"""Figure 4: gateway RSS with 1, 16 and 64 shards, idle and under load.

One simulator process recommending 64 shards (64 guilds, one per shard, `max_concurrency` 16 and
a short identify interval so 64 shards are up in seconds); for each shard count a fresh gateway
process runs them all. Idle = RSS after every shard is READY and 3 s of quiet; under load = the
peak RSS (sampled every 50 ms) while a flood of `total` events spread over its shards is relayed
to the counting consumer.

    uv run python bench/relay/memory_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import amqp  # noqa: E402
from common.gateway import start_gateway  # noqa: E402
from common.procs import Proc, stop_all  # noqa: E402
from common.sim import SimProc  # noqa: E402

MB = 1024 * 1024
SIM_SHARDS = 64
MAX_CONCURRENCY = 16
IDENTIFY_INTERVAL = 1.0


def run(
    amqp_url: str,
    log_dir: Path,
    *,
    shard_counts: tuple[int, ...] = (1, 16, 64),
    total: int = 64_000,
    run_id: str | None = None,
) -> dict[str, Any]:
    run_id = run_id or uuid.uuid4().hex[:8]
    group = f"bench-{run_id}-memory"
    queue = f"{group}.count"
    out: dict[str, Any] = {
        "settings": {
            "simulator_shards": SIM_SHARDS,
            "max_concurrency": MAX_CONCURRENCY,
            "identify_interval": IDENTIFY_INTERVAL,
            "load_events": total,
        },
        "rows": [],
        "errors": {},
    }
    sim: SimProc | None = None
    consumer: Proc | None = None
    try:
        sim = SimProc(
            log_dir,
            name="simulator-64",
            shards=SIM_SHARDS,
            guilds=SIM_SHARDS,
            max_concurrency=MAX_CONCURRENCY,
            identify_interval=IDENTIFY_INTERVAL,
        )
        consumer = Proc(
            "consumer-memory",
            [
                sys.executable,
                str(BENCH / "relay" / "consumer.py"),
                "--amqp-url",
                amqp_url,
                "--exchange",
                group,
                "--queue",
                queue,
            ],
            log_dir,
            stdin_pipe=True,
        )
        consumer.wait_line("READY", 30)
        for shards in shard_counts:
            gateway: Proc | None = None
            try:
                gateway = start_gateway(
                    log_dir,
                    name=f"gateway-{shards}-shards",
                    group=group,
                    amqp_url=amqp_url,
                    api_url=sim.api_url,
                    shard_count=shards,
                    identify_interval=IDENTIFY_INTERVAL,
                )
                ready_s = sim.wait_shards(shards, 120, watch=gateway)
                time.sleep(3)
                idle = gateway.rss_bytes()
                per_shard = max(1, total // shards)
                n = per_shard * shards
                consumer.send(f"EXPECT {n} {n / 1000 + 60:.0f}")
                consumer.wait_line("ARMED", 10)
                gateway.start_rss_sampling()
                started = time.time()
                cpu0 = gateway.cpu_seconds()
                sim.flood(per_shard)
                got = json.loads(consumer.wait_line("DONE", n / 1000 + 90, watch=gateway))
                cpu = gateway.cpu_seconds() - cpu0
                peak = gateway.stop_rss_sampling()
                seconds = got["last"] - started if got["count"] else float("nan")
                out["rows"].append(
                    {
                        "shards": shards,
                        "ready_s": ready_s,
                        "idle_rss_mb": idle / MB,
                        "load_peak_rss_mb": peak / MB,
                        "load_events": n,
                        "received": got["count"],
                        "rate": got["count"] / seconds if seconds > 0 else 0.0,
                        "cpu_s_per_100k": cpu / max(got["count"], 1) * 100_000,
                    }
                )
            except Exception as exc:
                out["errors"][f"{shards}_shards"] = repr(exc)
            finally:
                if gateway is not None:
                    gateway.stop()
                time.sleep(1)  # let the simulator notice the closed sessions
    except Exception as exc:
        out["errors"]["memory"] = repr(exc)
    finally:
        if consumer is not None:
            consumer.stop()
        if sim is not None:
            sim.stop()
        exchanges, queues = amqp.derived_names(group, shards=SIM_SHARDS)
        amqp.cleanup(amqp_url, exchanges, [*queues, queue])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@localhost:5672/")
    args = parser.parse_args()
    log_dir = BENCH / ".work" / time.strftime("memory-%Y%m%d-%H%M%S")
    run_id = uuid.uuid4().hex[:8]
    try:
        total = 16_000 if args.quick else 64_000
        print(json.dumps(run(args.amqp_url, log_dir, total=total, run_id=run_id), indent=2))
    finally:
        stop_all()
        amqp.sweep(args.amqp_url, f"bench-{run_id}")


if __name__ == "__main__":
    main()
