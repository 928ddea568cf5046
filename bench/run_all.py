"""`make bench`: every benchmark figure of issue 7, each next to a baseline from the same run.

    uv run python bench/run_all.py [--quick] [--only STAGE,...]

Stages: relay, memory, workers, decode, publish, flood, failover (figure 7, the gateway cluster).

Writes ``bench/results/<date>.md`` (``<date>-quick.md`` with ``--quick``: machine, commands,
tables) plus a JSON twin with every raw number, and prints the summary table. Subprocess logs go
to ``bench/.work/<run>/``. Each figure runs in its own RabbitMQ group (``bench-<run id>-...``),
deleted afterwards; every subprocess is killed on the way out, also on failure or Ctrl-C. A
failing figure is recorded and the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shlex
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import amqp, machine  # noqa: E402
from common.procs import stop_all  # noqa: E402
from common.report import render, summary_rows, summary_table  # noqa: E402

STAGES = ("relay", "memory", "workers", "decode", "publish", "flood", "failover")


def _load(relative: str) -> ModuleType:
    path = BENCH / relative
    if not path.exists():
        raise FileNotFoundError(f"{relative} does not exist (yet)")
    name = "bench_" + relative.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _timed(label: str, fn: Callable[[], Any], results: dict[str, Any]) -> None:
    print(f"[bench] {label} ...", flush=True)
    started = time.monotonic()
    try:
        results[label] = fn()
    except Exception as exc:
        results[label] = {"errors": {label: f"{exc!r}"}, "traceback": traceback.format_exc()}
        print(f"[bench] {label} FAILED: {exc!r}", flush=True)
    finally:
        stop_all()
    elapsed = time.monotonic() - started
    if isinstance(results.get(label), dict):
        results[label]["elapsed_s"] = round(elapsed, 1)
    print(f"[bench] {label} done in {elapsed:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every benchmark and write bench/results/.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round (~2 min)")
    parser.add_argument(
        "--only", default=",".join(STAGES), help="comma list of " + ",".join(STAGES)
    )
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL") or "amqp://guest:guest@localhost:5672/"
    )
    parser.add_argument("--no-js", action="store_true", help="skip the JavaScript gateway")
    parser.add_argument("--output", type=Path, default=None, help="results file (.md)")
    args = parser.parse_args()
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; choose from {','.join(STAGES)}")

    run_id = uuid.uuid4().hex[:8]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = BENCH / ".work" / f"run-{stamp}-{run_id}"
    log_dir.mkdir(parents=True, exist_ok=True)
    command = "uv run --frozen python bench/run_all.py" + (
        " " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    results: dict[str, Any] = {
        "run_id": run_id,
        "quick": args.quick,
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine.info(),
    }
    started = time.monotonic()
    try:
        if "relay" in stages:
            relay = _load("relay/relay_bench.py")
            settings = relay.Settings.for_mode(args.amqp_url, log_dir, args.quick)
            settings.js = not args.no_js
            settings.run_id = run_id
            _timed("relay", lambda: relay.run(settings), results)
        if "memory" in stages:
            memory = _load("relay/memory_bench.py")
            total = 16_000 if args.quick else 64_000
            _timed(
                "memory",
                lambda: memory.run(args.amqp_url, log_dir, total=total, run_id=run_id),
                results,
            )
        if "workers" in stages:
            workers = _load("workers/worker_bench.py")
            # 3 rounds: seven short variants on a shared machine need more than two for a median
            n, rounds = (5_000, 1) if args.quick else (30_000, 3)
            _timed(
                "workers",
                lambda: workers.run(args.amqp_url, log_dir, n=n, rounds=rounds, run_id=run_id),
                results,
            )
        if "decode" in stages:
            _timed("decode", lambda: _load("decode/decode_bench.py").run(quick=True), results)
        if "publish" in stages:
            n = 5_000 if args.quick else 20_000
            _timed(
                "publish",
                lambda: asyncio.run(_load("publish/publish_bench.py").run(args.amqp_url, n, 1024)),
                results,
            )
        if "flood" in stages:
            n = 50_000 if args.quick else 200_000
            _timed("flood", lambda: asyncio.run(_load("simulator/flood_bench.py").run(n)), results)
        if "failover" in stages:
            failover = _load("failover/failover_bench.py")
            # 3 kill scenarios, each on a fresh 3-process cluster (~45 s each); 1 with --quick
            runs = 1 if args.quick else 3
            _timed(
                "failover",
                lambda: failover.run(args.amqp_url, log_dir, runs=runs, run_id=run_id),
                results,
            )
    except KeyboardInterrupt:
        results["interrupted"] = True
    finally:
        stop_all()
        try:
            results["leftovers_swept"] = amqp.sweep(args.amqp_url, f"bench-{run_id}")
        except Exception as exc:
            results["leftovers_swept"] = f"sweep failed: {exc!r}"
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    # A quick run never overwrites the day's full results.
    suffix = "-quick" if args.quick else ""
    output = args.output or BENCH / "results" / f"{time.strftime('%Y-%m-%d')}{suffix}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(results), encoding="utf-8")
    output.with_suffix(".json").write_text(
        json.dumps(results, indent=2, default=str), encoding="utf-8"
    )
    print()
    print(summary_table(summary_rows(results)))
    print()
    shown = output.relative_to(BENCH.parent) if output.is_relative_to(BENCH.parent) else output
    print(f"[bench] results: {shown}")
    print(f"[bench] logs:    {log_dir.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
