"""Figure 5: the worker SDK against a plain aio-pika consumer and against the null-consumer bound.

Each variant drains its own pre-filled quorum queue in its own process (`drain.py`); they take
turns for `rounds` rounds and the median counts. Targets (issue 12), as ratios of this run:

- (i)   no-op SDK worker / plain aio-pika consumer, messages/s, same prefetch: >= 4x;
- (ii)  CPU per message of the no-op SDK worker: <= 25 us;
- (iii) a 1 ms async handler at concurrency 64: >= 10k messages/s per replica.

The null consumer (`--variant null`, no handler, acks from the frame callback) at the same
prefetch shows what the connection alone costs and roughly what RabbitMQ delivers on this
machine; (i) and (iii) are read against it. Rounds alternate the variants, so a burst of load
from elsewhere on the machine hits one round, not one variant.

    uv run python bench/workers/worker_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import amqp  # noqa: E402
from common.procs import Proc, stop_all  # noqa: E402

# variant -> (drain.py variant, prefetch); 64 is the SDK's default concurrency (16 until
# 2026-12-07, and still measured: figure 5's first rows).
VARIANTS: dict[str, tuple[str, int]] = {
    "aio-pika": ("aio-pika", 16),
    "worker": ("worker", 16),
    "null": ("null", 16),
    "aio-pika-64": ("aio-pika", 64),
    "worker-64": ("worker", 64),
    "null-64": ("null", 64),
    "worker-1ms": ("worker-1ms", 64),
}


def run(
    amqp_url: str,
    log_dir: Path,
    *,
    n: int = 20_000,
    rounds: int = 2,
    run_id: str | None = None,
) -> dict[str, Any]:
    run_id = run_id or uuid.uuid4().hex[:8]
    prefetch = {v: p for v, (_, p) in VARIANTS.items()}
    out: dict[str, Any] = {
        "settings": {"n": n, "rounds": rounds, "prefetch": prefetch, "queue_type": "quorum"},
        "passes": {v: [] for v in VARIANTS},
        "errors": {},
    }
    for r in range(rounds):
        for variant, (drain_variant, variant_prefetch) in VARIANTS.items():
            group = f"bench-{run_id}-workers-{variant}-{r}"
            proc = Proc(
                f"drain-{variant}-{r}",
                [
                    sys.executable,
                    str(BENCH / "workers" / "drain.py"),
                    "--variant",
                    drain_variant,
                    "--amqp-url",
                    amqp_url,
                    "--group",
                    group,
                    "-n",
                    str(n),
                    "--prefetch",
                    str(variant_prefetch),
                ],
                log_dir,
            )
            try:
                out["passes"][variant].append(json.loads(proc.wait_line("DONE", n / 200 + 120)))
            except Exception as exc:
                out["errors"][f"{variant}-{r}"] = repr(exc)
            finally:
                proc.stop()
                exchanges, queues = amqp.derived_names(group, shards=0, workers=["bench"])
                amqp.cleanup(amqp_url, exchanges, queues)
    # Where the worker's CPU per message goes, without RabbitMQ (frames fed from memory).
    proc = Proc("consume-cpu", [sys.executable, str(BENCH / "workers" / "consume_cpu.py")], log_dir)
    try:
        out["layers"] = json.loads(proc.wait_line("DONE", 600))
    except Exception as exc:
        out["errors"]["consume-cpu"] = repr(exc)
    finally:
        proc.stop()
    out["summary"] = {
        v: {
            "rate": statistics.median([p["rate"] for p in passes]),
            "rates": [round(p["rate"], 1) for p in passes],
            "cpu_s_per_100k": statistics.median([p["cpu_s_per_100k"] for p in passes]),
        }
        for v, passes in out["passes"].items()
        if passes
    }
    out["targets"] = targets(out["summary"])
    return out


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The three figures of issue 12 and their bounds, from the medians of this run."""

    def rate(variant: str) -> float | None:
        row = summary.get(variant)
        return row["rate"] if row else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    worker = summary.get("worker") or {}
    cpu_us = worker["cpu_s_per_100k"] * 10 if worker else None
    null_cpu = (summary.get("null") or {}).get("cpu_s_per_100k")
    return {
        "worker_vs_aio_pika": ratio(rate("worker"), rate("aio-pika")),
        "null_vs_aio_pika": ratio(rate("null"), rate("aio-pika")),
        "worker_vs_null": ratio(rate("worker"), rate("null")),
        "worker_vs_aio_pika_64": ratio(rate("worker-64"), rate("aio-pika-64")),
        "null_vs_aio_pika_64": ratio(rate("null-64"), rate("aio-pika-64")),
        "worker_cpu_us_per_message": cpu_us,
        "null_cpu_us_per_message": null_cpu * 10 if null_cpu is not None else None,
        "worker_1ms_rate": rate("worker-1ms"),
        "null_64_rate": rate("null-64"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@localhost:5672/")
    args = parser.parse_args()
    log_dir = BENCH / ".work" / time.strftime("workers-%Y%m%d-%H%M%S")
    run_id = uuid.uuid4().hex[:8]
    try:
        n, rounds = (5_000, 1) if args.quick else (30_000, 3)
        result = run(args.amqp_url, log_dir, n=n, rounds=rounds, run_id=run_id)
        print(json.dumps(result, indent=2))
    finally:
        stop_all()
        amqp.sweep(args.amqp_url, f"bench-{run_id}")


if __name__ == "__main__":
    main()
