"""Figure 5: messages/s through a no-op SDK worker vs a plain aio-pika consumer.

Each variant drains its own pre-filled quorum queue in its own process (`drain.py`); the two take
turns for `rounds` rounds and the median counts.

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

VARIANTS = ("aio-pika", "worker")


def run(
    amqp_url: str,
    log_dir: Path,
    *,
    n: int = 20_000,
    rounds: int = 2,
    prefetch: int = 16,
    run_id: str | None = None,
) -> dict[str, Any]:
    run_id = run_id or uuid.uuid4().hex[:8]
    out: dict[str, Any] = {
        "settings": {"n": n, "rounds": rounds, "prefetch": prefetch, "queue_type": "quorum"},
        "passes": {v: [] for v in VARIANTS},
        "errors": {},
    }
    for r in range(rounds):
        for variant in VARIANTS:
            group = f"bench-{run_id}-workers-{variant}-{r}"
            proc = Proc(
                f"drain-{variant}-{r}",
                [
                    sys.executable,
                    str(BENCH / "workers" / "drain.py"),
                    "--variant",
                    variant,
                    "--amqp-url",
                    amqp_url,
                    "--group",
                    group,
                    "-n",
                    str(n),
                    "--prefetch",
                    str(prefetch),
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
    out["summary"] = {
        v: {
            "rate": statistics.median([p["rate"] for p in passes]),
            "rates": [round(p["rate"], 1) for p in passes],
            "cpu_s_per_100k": statistics.median([p["cpu_s_per_100k"] for p in passes]),
        }
        for v, passes in out["passes"].items()
        if passes
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@localhost:5672/")
    args = parser.parse_args()
    log_dir = BENCH / ".work" / time.strftime("workers-%Y%m%d-%H%M%S")
    run_id = uuid.uuid4().hex[:8]
    try:
        n, rounds = (5_000, 1) if args.quick else (20_000, 2)
        result = run(args.amqp_url, log_dir, n=n, rounds=rounds, run_id=run_id)
        print(json.dumps(result, indent=2))
    finally:
        stop_all()
        amqp.sweep(args.amqp_url, f"bench-{run_id}")


if __name__ == "__main__":
    main()
