"""Markdown for `bench/results/<date>.md` and the summary table `run_all.py` prints."""

from __future__ import annotations

import math
from typing import Any

Row = tuple[str, str, str, str, str, str]


def _num(value: Any, fmt: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def _ratio(a: Any, b: Any) -> float | None:
    if not a or not b or any(isinstance(v, float) and math.isnan(v) for v in (a, b)):
        return None
    return float(a) / float(b)


def _x(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "NOT met")


def _get(d: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def others_bound(results: dict[str, Any]) -> tuple[int, float, float] | None:
    """Cores, CPU s per 100k of everything but the relay (our gateway's pass), and the rate at
    which those processes alone would use every core: no relay can be faster end to end here."""
    cores = _get(results, "machine", "nproc")
    g = _get(results, "relay", "throughput", "gateway") or {}
    keys = ("rabbit_cpu_s_per_100k", "consumer_cpu_s_per_100k", "simulator_cpu_s_per_100k")
    parts = [g.get(k) for k in keys]
    if not cores or any(not isinstance(v, (int, float)) or math.isnan(v) for v in parts):
        return None
    cpu = sum(float(v) for v in parts if isinstance(v, (int, float)))
    return (cores, cpu, cores * 100_000 / cpu) if cpu > 0 else None


def summary_rows(results: dict[str, Any]) -> list[Row]:
    relay = results.get("relay") or {}
    tp = relay.get("throughput") or {}
    g, c, j = tp.get("gateway") or {}, tp.get("ceiling") or {}, tp.get("js") or {}
    sim = relay.get("simulator_send") or {}
    lat = relay.get("latency") or {}
    rows: list[Row] = []

    g_rate, c_rate, j_rate = g.get("rate"), c.get("rate"), j.get("rate")
    rows.append(("1. Relay throughput, events/s end to end", _num(g_rate), "-", "-", "-", "-"))
    g_cpu, c_cpu = g.get("cpu_s_per_100k"), c.get("cpu_s_per_100k")
    rows.append(
        (
            "1. Gateway CPU s per 100k events",
            _num(g_cpu, ".2f"),
            f"aio-pika publisher: {_num(c_cpu, '.2f')}",
            _x(_ratio(g_cpu, c_cpu)),
            "-",
            "-",
        )
    )
    r = _ratio(g_rate, c_rate)
    rows.append(
        (
            "2. Gateway / naive aio-pika ceiling",
            _num(g_rate),
            f"aio-pika: {_num(c_rate)}",
            _x(r),
            ">= 0.8x (stretch 1.5x)",
            _verdict(None if r is None else r >= 0.8)
            + ("" if r is None or r < 1.5 else ", stretch met"),
        )
    )
    rows.append(
        (
            "2. Gateway / simulator send rate",
            _num(g_rate),
            f"simulator: {_num(sim.get('rate'))}",
            _x(_ratio(g_rate, sim.get("rate"))),
            "-",
            "-",
        )
    )
    gl = _get(lat, "gateway", "latency_ms") or {}
    cl = _get(lat, "ceiling", "latency_ms") or {}
    jl = _get(lat, "js", "latency_ms") or {}
    jpl = _get(lat, "js_persistent", "latency_ms") or {}

    def trio(d: dict[str, Any]) -> str:
        p50, p99, top = (_num(d.get(k), ".1f") for k in ("p50", "p99", "max"))
        return f"{p50} / {p99} / {top}"

    p99 = gl.get("p99")
    rows.append(
        (
            "3. Latency at 2,000 ev/s, p50 / p99 / max ms",
            trio(gl) if gl else "-",
            f"aio-pika: {trio(cl) if cl else '-'}; JS: {trio(jl) if jl else '-'}"
            + (f"; JS persistent: {trio(jpl)}" if jpl else ""),
            "-",
            "p99 <= 10 ms",
            _verdict(None if p99 is None else p99 <= 10),
        )
    )
    mem_rows = {row["shards"]: row for row in (_get(results, "memory", "rows") or [])}
    mem = "; ".join(
        f"{n}: {_num(row['idle_rss_mb'], '.1f')} / {_num(row['load_peak_rss_mb'], '.1f')}"
        for n, row in sorted(mem_rows.items())
    )
    js_mem = (
        f"JS 1 shard: {_num(relay.get('js_idle_rss_mb'), '.1f')} / "
        f"{_num(j.get('peak_rss_mb'), '.1f')}"
        if relay.get("js_idle_rss_mb")
        else "-"
    )
    idle16 = mem_rows[16]["idle_rss_mb"] if 16 in mem_rows else None
    rows.append(
        (
            "4. Gateway RSS MB idle / load (shards: idle / load)",
            mem or "-",
            js_mem,
            "-",
            "<= 60 MB at 16 idle shards",
            _verdict(None if idle16 is None else idle16 <= 60),
        )
    )
    rows.extend(_worker_rows(results))
    r6 = _ratio(g_rate, j_rate)
    rows.append(
        (
            "6. Ours / JavaScript Spectacles gateway",
            _num(g_rate),
            f"JS: {_num(j_rate)}",
            _x(r6),
            ">= 2x",
            _verdict(None if r6 is None else r6 >= 2),
        )
    )
    j_cpu = j.get("cpu_s_per_100k")
    r_cpu = _ratio(j_cpu, g_cpu)
    rows.append(
        (
            "6. CPU per event: JS gateway / ours",
            f"{_num(g_cpu, '.2f')} s/100k",
            f"JS: {_num(j_cpu, '.2f')} s/100k",
            _x(r_cpu),
            "(>= 2x on throughput)",
            "-",
        )
    )
    n_rate = _get(tp, "null", "rate")
    r_null = _ratio(n_rate, j_rate)
    rows.append(
        (
            "6. Bound: null relay / JS gateway",
            f"null relay: {_num(n_rate)}",
            f"JS: {_num(j_rate)}; ours: {_num(g_rate)} ({_x(_ratio(g_rate, n_rate))} of the bound)",
            _x(r_null),
            "(what >= 2x needs)",
            "-"
            if r_null is None
            else ("2x reachable here" if r_null >= 2 else "2x NOT reachable on this machine"),
        )
    )
    bound = others_bound(results)
    if bound is not None:
        cores, cpu, rate = bound
        rows.append(
            (
                "6. Rate at which the other processes alone fill the cores",
                _num(rate),
                f"{cores} cores / {cpu:.2f} CPU s per 100k (RabbitMQ + consumer + simulator, "
                "our gateway's pass); vs JS",
                _x(_ratio(rate, j_rate)),
                "-",
                "-",
            )
        )
    jp_rate = _get(tp, "js_persistent", "rate")
    if jp_rate:
        rows.append(
            (
                "6. Ours / JS gateway publishing persistent",
                _num(g_rate),
                f"JS persistent: {_num(jp_rate)}",
                _x(_ratio(g_rate, jp_rate)),
                "-",
                "-",
            )
        )
    rows.extend(failover_rows(results))
    return rows


def summary_table(rows: list[Row]) -> str:
    head = "| figure | ours | baseline (same run) | ratio | target | verdict |"
    lines = [head, "|---|---:|---|---:|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _throughput_table(relay: dict[str, Any]) -> list[str]:
    tp = relay.get("throughput") or {}
    names = {
        "gateway": "spectacles gateway (ours)",
        "ceiling": "naive aio-pika publisher (the ceiling)",
        "js": "JavaScript Spectacles gateway (as shipped: transient, no confirms)",
        "js_persistent": "JavaScript gateway publishing persistent (still no confirms)",
        "null": "null relay (no inflate, no decode, pre-built frames, confirms): "
        "the bound for any relay here",
    }
    lines = [
        "| contender | events/s (median) | per round | process CPU s / 100k | "
        "RabbitMQ CPU s / 100k | consumer CPU s / 100k | simulator CPU s / 100k | "
        "all processes CPU s / 100k | peak RSS MB | all received |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, label in names.items():
        row = tp.get(key)
        if not row and key == "js_persistent":
            continue
        if not row:
            lines.append(f"| {label} | - | - | - | - | - | - | - | - | not run |")
            continue
        lines.append(
            f"| {label} | {_num(row['rate'])} | {', '.join(_num(x) for x in row['rates'])} | "
            f"{_num(row['cpu_s_per_100k'], '.2f')} | "
            f"{_num(row.get('rabbit_cpu_s_per_100k'), '.2f')} | "
            f"{_num(row.get('consumer_cpu_s_per_100k'), '.2f')} | "
            f"{_num(row.get('simulator_cpu_s_per_100k'), '.2f')} | "
            f"{_num(row.get('all_cpu_s_per_100k'), '.2f')} | "
            f"{_num(row['peak_rss_mb'], '.1f')} | {'yes' if row['complete'] else 'NO'} |"
        )
    sim = relay.get("simulator_send")
    if sim:
        lines.append(
            f"| simulator send rate (discarding client) | {_num(sim['rate'])} | - | - | - | - | "
            f"{_num(sim['cpu_s_per_100k'], '.2f')} | - | - | - |"
        )
    return lines


def _bound_note(results: dict[str, Any]) -> list[str]:
    """What the null relay and the other processes' CPU say about any relay's reachable rate."""
    tp = _get(results, "relay", "throughput") or {}
    n_rate, j_rate = _get(tp, "null", "rate"), _get(tp, "js", "rate")
    lines = []
    if n_rate:
        lines.append(
            f"The null relay (`relay/null_relay.py`: websocket frames counted from raw bytes, no "
            f"inflate, no decode, one pre-built persistent publish per frame, confirms, window "
            f"1024) is the cheapest relay possible: {_num(n_rate)} events/s, "
            f"{_x(_ratio(n_rate, j_rate))} the JavaScript gateway: the highest ratio over it "
            "that any relay with our wire contract (persistent, confirms) can reach on this "
            "machine."
        )
    bound = others_bound(results)
    if bound is not None:
        cores, cpu, rate = bound
        lines.append(
            f"RabbitMQ + consumer + simulator alone used {cpu:.2f} CPU s per 100k events in our "
            f"gateway's pass: on {cores} cores they would be saturated at {_num(rate)} events/s "
            f"({_x(_ratio(rate, j_rate))} the JavaScript gateway) even with a relay costing "
            "nothing (an upper bound: a pipeline never keeps every core busy; the null relay "
            "shows what is reached)."
        )
    return [" ".join(lines), ""] if lines else []


def _js_note(relay: dict[str, Any]) -> list[str]:
    info = relay.get("js_info")
    if not info:
        return []
    return [
        f"JavaScript gateway: `@spectacles/gateway` 0.12.1 + `@spectacles/brokers` 0.9.3, inflater "
        f"`{info.get('zlib')}`, bodies serialised as `{info.get('serialize')}`; adapted to the "
        "simulator in the harness only (bench/README.md).",
        "",
    ]


def _latency_table(relay: dict[str, Any]) -> list[str]:
    lat = relay.get("latency") or {}
    lines = [
        "| contender | p50 ms | p90 ms | p99 ms | max ms | mean ms | events | achieved ev/s | "
        "p99 per slice |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, label in (
        ("gateway", "simulator -> spectacles gateway -> RabbitMQ -> consumer"),
        ("ceiling", "aio-pika publisher (paced) -> RabbitMQ -> consumer"),
        ("js", "simulator -> JavaScript gateway (transient) -> RabbitMQ -> consumer"),
        ("js_persistent", "simulator -> JavaScript gateway (persistent) -> RabbitMQ -> consumer"),
    ):
        row = lat.get(key)
        if not row or not row.get("latency_ms"):
            continue
        d = row["latency_ms"]
        lines.append(
            f"| {label} | {_num(d['p50'], '.1f')} | {_num(d['p90'], '.1f')} | "
            f"{_num(d['p99'], '.1f')} | {_num(d['max'], '.1f')} | {_num(d['mean'], '.1f')} | "
            f"{_num(d['n'])} | {_num(row['rate'])} | "
            f"{', '.join(_num(x, '.1f') for x in row.get('slice_p99_ms', []))} |"
        )
    return lines


def _memory_table(results: dict[str, Any]) -> list[str]:
    memory = results.get("memory") or {}
    relay = results.get("relay") or {}
    lines = [
        "| process | shards | all READY after s | idle RSS MB | peak RSS MB under load | "
        "load events | events/s | CPU s / 100k |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in memory.get("rows") or []:
        lines.append(
            f"| spectacles gateway | {row['shards']} | {_num(row['ready_s'], '.1f')} | "
            f"{_num(row['idle_rss_mb'], '.1f')} | {_num(row['load_peak_rss_mb'], '.1f')} | "
            f"{_num(row['load_events'])} | {_num(row['rate'])} | "
            f"{_num(row['cpu_s_per_100k'], '.2f')} |"
        )
    js = _get(relay, "throughput", "js")
    if relay.get("js_idle_rss_mb") and js:
        lines.append(
            f"| JavaScript gateway (relay run) | 1 | - | {_num(relay['js_idle_rss_mb'], '.1f')} | "
            f"{_num(js['peak_rss_mb'], '.1f')} | - | - | - |"
        )
    return lines


def _worker_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Figure 5: the three worker targets of issue 12, each next to its bound from this run."""
    ws = _get(results, "workers", "summary") or {}

    def rate(key: str) -> Any:
        return _get(ws, key, "rate")

    w, a, null = rate("worker"), rate("aio-pika"), rate("null")
    w64, a64, null64 = rate("worker-64"), rate("aio-pika-64"), rate("null-64")
    r16, r64 = _ratio(w, a), _ratio(w64, a64)
    cpu = _get(ws, "worker", "cpu_s_per_100k")
    cpu_us = cpu * 10 if cpu is not None else None
    null_cpu = _get(ws, "null", "cpu_s_per_100k")
    slow = rate("worker-1ms")
    return [
        (
            "5. No-op worker / aio-pika consumer, messages/s, prefetch 16",
            _num(w),
            f"aio-pika: {_num(a)}; null consumer (no handler): {_num(null)} = "
            f"{_x(_ratio(null, a))} aio-pika",
            _x(r16),
            ">= 4x",
            _verdict(None if r16 is None else r16 >= 4),
        ),
        (
            "5. No-op worker / aio-pika consumer, messages/s, prefetch 64 (SDK default)",
            _num(w64),
            f"aio-pika: {_num(a64)}; null consumer (no handler): {_num(null64)} = "
            f"{_x(_ratio(null64, a64))} aio-pika",
            _x(r64),
            ">= 4x",
            _verdict(None if r64 is None else r64 >= 4),
        ),
        (
            "5. No-op worker CPU us per message (prefetch 16)",
            _num(cpu_us, ".1f"),
            f"null consumer: {_num(null_cpu * 10 if null_cpu is not None else None, '.1f')}",
            "-",
            "<= 25 us",
            _verdict(None if cpu_us is None else cpu_us <= 25),
        ),
        (
            "5. 1 ms async handler, concurrency 64, messages/s per replica",
            _num(slow),
            f"null consumer, prefetch 64: {_num(null64)}",
            _x(_ratio(slow, null64)),
            ">= 10,000",
            _verdict(None if slow is None else slow >= 10_000),
        ),
    ]


def _workers_table(results: dict[str, Any]) -> list[str]:
    ws = _get(results, "workers", "summary") or {}
    lines = [
        "| consumer | prefetch | messages/s (median) | per round | CPU s / 100k |",
        "|---|---:|---:|---|---:|",
    ]
    for key, prefetch, label in (
        ("worker", 16, "spectacles Worker, no-op handler (typed decode, ack after handler)"),
        ("aio-pika", 16, "plain aio-pika consumer, no-op, manual ack"),
        ("null", 16, "null consumer: lean connection, no handler, ack from the frame callback"),
        ("worker-64", 64, "spectacles Worker, no-op handler"),
        ("aio-pika-64", 64, "plain aio-pika consumer, no-op, manual ack"),
        ("null-64", 64, "null consumer, no handler"),
        ("worker-1ms", 64, "spectacles Worker, handler awaits asyncio.sleep(0.001)"),
    ):
        row = ws.get(key)
        if row:
            lines.append(
                f"| {label} | {prefetch} | {_num(row['rate'])} | "
                f"{', '.join(_num(x) for x in row['rates'])} | "
                f"{_num(row['cpu_s_per_100k'], '.2f')} |"
            )
    layers = _get(results, "workers", "layers")
    if layers:
        lines += [
            "",
            "CPU per message without RabbitMQ or a socket (`bench/workers/consume_cpu.py`: "
            "pre-built frames of the same messages fed to the connection 16 deliveries at a "
            "time, min of 5 runs); the drain's figure minus the last row is socket I/O and the "
            "event loop's polling:",
            "",
            "| layer | CPU us / message | runs |",
            "|---|---:|---|",
        ]
        for key, label in (
            ("connection", "connection: frames parsed, acked from the callback"),
            ("consumer", "+ Consumer: runners, Delivery, retry headers, batched acks"),
            ("worker", "+ worker SDK: typed decode, Context, metrics"),
        ):
            row = layers.get(key)
            if row:
                lines.append(
                    f"| {label} | {_num(row['us_per_message'], '.1f')} | "
                    f"{', '.join(_num(x, '.1f') for x in row['runs'])} |"
                )
    return lines


def _other_tables(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    decode = results.get("decode") or {}
    if decode.get("results"):
        lines += [
            "### Decode (bench/decode, quick mode)",
            "",
            "| event | bytes | library | ns/op | vs msgspec |",
            "|---|---:|---|---:|---:|",
        ]
        for r in decode["results"]:
            lines.append(
                f"| {r['event']} | {r['bytes']} | {r['library']} | {_num(r['ns_per_op'])} | "
                f"{r['ratio_vs_msgspec']:.2f}x |"
            )
        lines.append("")
    publish = results.get("publish") or {}
    if publish.get("variants"):
        lines += [
            f"### Confirmed publish (bench/publish, n={publish['n']}, asyncio loop)",
            "",
            "| variant | msgs/s | CPU us/msg | vs naive aio-pika |",
            "|---|---:|---:|---:|",
        ]
        for label, row in publish["variants"].items():
            lines.append(
                f"| {label} | {_num(row['msgs_per_s'])} | {_num(row['cpu_us_per_msg'], '.1f')} | "
                f"{row['vs_aio_pika']:.2f}x |"
            )
        lines.append("")
    flood = results.get("flood") or {}
    if flood.get("server_rate"):
        lines += [
            "### Simulator flood (bench/simulator, one inflating client)",
            "",
            "| events | server events/s | server CPU us/event | end-to-end events/s |",
            "|---:|---:|---:|---:|",
            f"| {_num(flood['events'])} | {_num(flood['server_rate'])} | "
            f"{flood['server_cpu_us_per_event']} | {_num(flood['end_to_end_rate'])} |",
            "",
        ]
    return lines


def _spread_text(spread: Any) -> str:
    if not isinstance(spread, dict):
        return "-"
    return f"{spread['median']:.1f} ({spread['min']:.1f}-{spread['max']:.1f})"


def failover_rows(results: dict[str, Any]) -> list[Row]:
    """Figure 7: SIGKILL of one of 3 gateway processes to every orphaned shard READY again."""
    f = _get(results, "failover", "summary") or {}
    ready = f.get("ready_s")
    lost = f.get("lost") if f.get("completed") else None
    worst = ready["max"] if isinstance(ready, dict) else None
    return [
        (
            "7. Failover: SIGKILL -> orphaned shards READY, s median (min-max)",
            _spread_text(ready),
            f"from the logs (no announcement lag): {_spread_text(f.get('log_ready_s'))}",
            "-",
            "<= 15 s",
            _verdict(None if worst is None else worst <= 15.0),
        ),
        (
            "7. Failover: events lost / duplicated per run",
            "-" if lost is None else f"{lost} lost",
            "duplicates: "
            + (", ".join(_num(d) for d in f.get("duplicates") or []) or "-")
            + "; IDENTIFYs: "
            + (", ".join(str(i) for i in f.get("identifies") or []) or "-"),
            "-",
            "0 lost, 12 IDENTIFYs",
            _verdict(
                None
                if lost is None
                else lost == 0 and all(i == 12 for i in f.get("identifies") or [])
            ),
        ),
    ]


def failover_section(failover: dict[str, Any] | None) -> list[str]:
    """The method and the per-run table of figure 7."""
    if not failover or not failover.get("runs"):
        return ["(not run)", ""]
    s = failover.get("settings") or {}
    save = s.get("save_interval")
    save_text = (
        f"{s.get('save_interval_effective')} s (the default, not set)"
        if save is None
        else f"{save} s"
    )
    lines = [
        f"{s.get('shards')} shards, {s.get('processes')} gateway processes in auto mode "
        f"(`DISCORD_SHARD_IDS=auto`), a fresh simulator process and RabbitMQ group per run; "
        f"cluster timings: {s.get('cluster')}; amqp session store, save_interval {save_text}. "
        f"Flood: {s.get('rate')} MESSAGE_CREATE/s per live session (repeated `POST /_sim/flood` "
        f"of {s.get('round_events')} events per session, `wait`; the rate reached is in the "
        "table: a round ends with its slowest session), "
        f"{s.get('before_s')} s before the SIGKILL "
        f"and {s.get('after_s')} s after every orphaned shard is READY. *READY after* = kill -> "
        f"every shard of the victim READY in a survivor's `GET /cluster` (polled every "
        f"{_num((s.get('poll_s') or 0) * 1000)} ms; a member's entry is its last announcement, "
        "at most one 1 s heartbeat old). *Log* = the same from the survivors' `shard claimed` "
        "and `shard ready after takeover` log lines (wall clock, no announcement lag). Counted "
        "from a queue bound to the group's exchange for MESSAGE_CREATE (bound before the flood, "
        "drained after it): *lost* = flooded - unique message ids, *duplicates* = received - "
        "unique (events relayed before the kill and replayed by the RESUME from the last saved "
        "seq). Target (issue 13): every orphaned shard READY within 15 s, 0 lost.",
        "",
        "| run | victim | orphaned shards | settle s | READY after s (/cluster) | first claim "
        "seen s | log: claimed s | log: READY s (last) | flooded | ev/s before kill / overall | "
        "received | "
        "unique | lost | duplicates | IDENTIFYs | RESUMEs after kill | overlaps | shares after |",
        "|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in failover["runs"]:
        if "error" in r:
            lines.append(f"| {r['run']} | failed: `{str(r['error'])[:200]}` |" + " |" * 16)
            continue
        log = r.get("log") or {}
        claimed = log.get("claimed_s") or []
        claim_text = f"{min(claimed):.2f}-{max(claimed):.2f}" if claimed else "-"
        lines.append(
            f"| {r['run']} | {r['victim'].rsplit('-', 1)[-1]} | "
            f"{','.join(str(x) for x in r['orphaned'])} | {_num(r['settle_s'], '.1f')} | "
            f"**{_num(r['ready_s'], '.2f')}** | {_num(r['first_claimed_s'], '.2f')} | "
            f"{claim_text} | {_num(log.get('all_ready_s'), '.2f')} | "
            f"{_num(r['flood']['sent'])} | {_num(r['flood'].get('rate_before_kill'))} / "
            f"{_num(r['flood']['rate'])} | {_num(r['received'])} | "
            f"{_num(r['unique'])} | **{r['lost']}** | {_num(r['duplicates'])} | "
            f"{r['identifies']} | {r['resumes_after_kill']} | {r['shard_overlaps']} | "
            f"{'/'.join(str(x) for x in r['shares_after'])} |"
        )
    f = failover.get("summary") or {}
    lines += [
        "",
        f"Summary over {f.get('completed')}/{f.get('runs')} runs: READY after the kill "
        f"{_spread_text(f.get('ready_s'))} s median (min-max) by `/cluster`, "
        f"{_spread_text(f.get('log_ready_s'))} s by the logs; lost {f.get('lost')}; "
        f"duplicates {f.get('duplicates')}; IDENTIFYs {f.get('identifies')} (12 = none after "
        f"the kill); RESUMEs after the kill {f.get('resumes_after_kill')}; shard overlaps "
        f"{f.get('shard_overlaps')}. Target met: **{'yes' if f.get('target_met') else 'NO'}**. "
        f"RabbitMQ names left over and swept: {failover.get('leftovers_swept')}.",
        "",
    ]
    return lines


def render_failover(results: dict[str, Any]) -> str:
    """`bench/results/failover-<date>.md`: figure 7 on its own."""
    m = results["machine"]
    failover = results.get("failover") or {}
    errors = failover.get("errors") or {}
    lines = [
        f"# Gateway cluster failover {results['started']}",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} CPUs, {m['cpu']}; {m['platform']}",
        f"- {m['python']}; RabbitMQ {m['rabbitmq']} (same machine)",
        f"- Load average at start {m['load_average']}, at end {m.get('load_average_end')} "
        "(the machine is shared: the times are upper bounds)",
        "",
        "## Command",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"Run id `{results['run_id']}`, {results.get('elapsed_s')} s in total; subprocess logs in "
        "`bench/.work/`. Also `make bench` (figure 7; `--only failover`).",
        "",
        "## Summary",
        "",
        summary_table(failover_rows(results)),
        "",
        "## Runs",
        "",
        *failover_section(failover),
        "## Errors",
        "",
        *([f"- **{k}**: `{str(v)[:400]}`" for k, v in errors.items()] or ["None."]),
        "",
        "See `bench/README.md` (figure 7) for the method.",
        "",
    ]
    return "\n".join(lines)


def _errors(results: dict[str, Any]) -> list[str]:
    lines = []
    for stage in ("relay", "memory", "workers", "decode", "publish", "flood", "failover"):
        errors = _get(results, stage, "errors") or {}
        for key, value in errors.items():
            lines.append(f"- **{stage} / {key}**: `{str(value)[:400]}`")
    return lines


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    relay = results.get("relay") or {}
    rs = relay.get("settings") or {}
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    lines = [
        f"# Benchmarks {results['started']}{' (quick)' if results.get('quick') else ''}",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} CPUs, {m['cpu']}; {m['platform']}",
        f"- {m['python']}; Node.js {m['node']}; RabbitMQ {m['rabbitmq']} (same machine)",
        f"- Libraries: {libs}",
        f"- Load average at start {m['load_average']}, at end {m.get('load_average_end')} "
        "(the machine is shared: compare ratios within this run, not absolute numbers)",
        "",
        "## Commands",
        "",
        "```",
        "make bench            # = " + results["command"],
        "make bench BENCH_ARGS=--quick",
        "```",
        "",
        f"Run id `{results['run_id']}`, {results.get('elapsed_s')} s in total; subprocess logs in "
        "`bench/.work/`. RabbitMQ names left over and swept at the end: "
        f"{results.get('leftovers_swept')}.",
        "",
        "## Summary",
        "",
        summary_table(summary_rows(results)),
        "",
        "## 1, 2, 6. Relay throughput, the ceilings, the JavaScript original",
        "",
        f"{_num(rs.get('n'))} ~1 KB MESSAGE_CREATE events per relay pass "
        f"({_num(rs.get('ceiling_n'))} for the naive ceiling; zlib-stream, persistent, "
        f"confirms for ours and the ceiling), {rs.get('rounds')} round(s), contenders taking turns "
        f"in each round after a {_num(rs.get('warmup'))}-event warm-up. Rate = events / (last "
        "receipt at the consumer - flood start). CPU = the contender's process (psutil). "
        f"Relayed bodies average {_num(relay.get('relayed_body_bytes'))} bytes; the ceiling "
        f"publishes {_num(relay.get('ceiling_bodies'))} of them, sampled from the relay. "
        "*All processes* = relay + RabbitMQ + consumer + simulator: on a machine whose cores "
        "they share, the end-to-end rate follows that sum, not the relay's own CPU alone.",
        "",
        *_throughput_table(relay),
        "",
        *_bound_note(results),
        *_js_note(relay),
        "## 3. Latency at a fixed 2,000 events/s",
        "",
        f"{_num(rs.get('latency_seconds'))} s at {_num(rs.get('latency_rate'))} events/s per "
        f"contender, in {rs.get('latency_slices')} slices taking turns (percentiles over all "
        "events); send time "
        "= the simulator's snowflake `nonce` (ms resolution, so every value is over-stated by "
        "0-1 ms); receipt = the consumer's wall clock (same machine).",
        "",
        *_latency_table(relay),
        "",
        "## 4. Gateway memory",
        "",
        *_memory_table(results),
        "",
        "## 5. Workers",
        "",
        *_workers_table(results),
        "",
        "Each consumer drains its own pre-filled quorum queue of ~1 KB MESSAGE_CREATE bodies in "
        "its own process; rate = messages / (last handled - first handled), CPU = that "
        "process's CPU time over the same span. The null consumer (`bench/workers/drain.py "
        "--variant null`) has no handler and acks from the frame callback: what the lean "
        "connection alone costs, and roughly the rate RabbitMQ delivers at that prefetch on "
        "this machine, whose 2 cores it shares with every consumer here (and with whatever "
        "else runs: the per-round columns show the spread). It is not a strict bound: its acks "
        "leave one loop iteration earlier than the worker's, so RabbitMQ answers with smaller "
        "batches, and in some runs the worker drains faster.",
        "",
        "## 7. Gateway cluster failover",
        "",
        *failover_section(results.get("failover")),
        "## Other benchmarks in this run",
        "",
        *(_other_tables(results) or ["(none ran)", ""]),
        "## Errors",
        "",
        *(_errors(results) or ["None."]),
        "",
        "See `bench/README.md` for the method of every figure and the JavaScript harness.",
        "",
    ]
    return "\n".join(lines)
