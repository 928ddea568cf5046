"""The demo stack on a 3-node RabbitMQ cluster loses a node under load and loses nothing.

Run by tests/e2e/run_cluster.sh (with `uv run`, for the worker SDK):

    python tests/e2e/check_cluster.py --simulator http://127.0.0.1:PORT --amqp-url URL1,URL2,URL3 \
        --node rabbit=CONTAINER --node rabbit-2=CONTAINER --node rabbit-3=CONTAINER \
        --gateway CONTAINER --ready http://127.0.0.1:P/readyz ... --report FILE

A counter (a worker, on its own quorum queue, connected to all three nodes) records the id of every
flooded MESSAGE_CREATE. Then:
1. while the simulator floods, the node the gateway's publisher is connected to is killed
   (`docker kill`): every flooded event still reaches the counter (0 missing, by message id),
   `!ping` answers, a raid gives exactly one alert;
2. the node is started again: it rejoins and every quorum queue is back to three online members
   (and no node is quorum-critical);
3. as 1, killing the node that leads the ping worker's queue.
The time from each kill to the gateway publishing again and the events lost are written to the
report (JSON). Exits 0 when everything holds, 1 naming the failed check otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
from datetime import datetime
from pathlib import Path
from typing import Any

from spectacles.models import MessageCreate
from spectacles.worker import Context, Worker, WorkerSettings

sys.path.insert(0, str(Path(__file__).parent))
from check_demo import (
    CheckFailed,
    Simulator,
    check_ping,
    check_raid,
    check_ready,
    check_slash_ping,
    http,
    log,
    wait_for,
)

FLOOD_WORKER_ID = 30  # the simulator's flood ids carry this snowflake worker id (bits 17-21)
FLOOD_SECONDS = 14.0  # a steady flood this long; the kill lands in it, the failover too
FLOOD_RATE = 200  # events per second and gateway session
KILL_AFTER = 4.0
DELIVERY_WAIT = 120.0  # after the flood: every event at the counter by then
REJOIN_WAIT = 180.0
_NODE_RE = re.compile(r"<rabbit@([A-Za-z0-9_-]+)\.")


def docker(*args: str, timeout: float = 60.0, check: bool = True) -> str:
    """stdout and stderr of a docker command (`docker logs` replays a container's stderr there)."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise CheckFailed(f"docker {' '.join(args[:3])} failed: {result.stderr.strip()[-300:]}")
    return result.stdout + result.stderr


class Cluster:
    """The three RabbitMQ containers, by node host name (rabbit, rabbit-2, rabbit-3)."""

    def __init__(self, nodes: dict[str, str]) -> None:
        self.nodes = nodes
        self.down: set[str] = set()

    def live(self) -> list[str]:
        return [name for name in self.nodes if name not in self.down]

    def ctl(self, *args: str, tool: str = "rabbitmqctl", node: str | None = None) -> str:
        """Run a CLI tool on a live node (any, unless named); retried once on a flaky CLI."""
        for attempt in range(3):
            target = node or self.live()[attempt % len(self.live())]
            result = subprocess.run(
                ["docker", "exec", self.nodes[target], tool, "-q", *args],
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
            if result.returncode == 0:
                return result.stdout
            if node is not None and attempt == 2:
                raise CheckFailed(f"{tool} {args[0]} on {target}: {result.stderr.strip()[-300:]}")
        raise CheckFailed(f"{tool} {args[0]} failed on every live node")

    def publisher_node(self) -> str:
        """The node the gateway's publisher connection is on (by its connection name)."""
        listing = self.ctl("list_connections", "pid", "client_properties", "--no-table-headers")
        for line in listing.splitlines():
            if ":publisher" in line and "spectacles-gateway" in line:
                match = _NODE_RE.search(line)
                if match:
                    return match.group(1)
        raise CheckFailed(f"no gateway publisher connection in:\n{listing[-2000:]}")

    def leader_of(self, queue: str) -> str:
        for line in self.ctl("list_queues", "name", "leader", "--no-table-headers").splitlines():
            name, _, leader = line.partition("\t")
            if name.strip() == queue and "@" in leader:
                return leader.strip().split("@", 1)[1]
        raise CheckFailed(f"queue {queue} has no leader")

    def quorum_queues(self) -> dict[str, tuple[int, int]]:
        """name -> (members, online members) of every quorum queue."""
        found = {}
        listing = self.ctl("list_queues", "name", "type", "members", "online", "--no-table-headers")
        for line in listing.splitlines():
            parts = line.split("\t")
            if len(parts) >= 4 and parts[1].strip() == "quorum":
                found[parts[0]] = (parts[2].count("rabbit@"), parts[3].count("rabbit@"))
        return found

    def kill(self, name: str) -> float:
        """SIGKILL the node; returns when the kill was asked for (failover is measured from it)."""
        killed_at = time.time()
        docker("kill", self.nodes[name])
        self.down.add(name)
        log(f"killed node {name} (container {self.nodes[name][:12]})")
        return killed_at

    def start(self, name: str) -> None:
        docker("start", self.nodes[name])
        self.down.discard(name)
        log(f"started node {name} again")


class Counter:
    """A worker on its own quorum queue that records every flooded message id it gets."""

    def __init__(self, amqp_url: str, group: str) -> None:
        self.ids: set[int] = set()
        self.arrivals: dict[int, float] = {}
        self.lock = threading.Lock()
        self.settings = WorkerSettings(
            discord_token="e2e-counter",
            amqp_url=amqp_url,
            group=group,
            discord_api_url="http://127.0.0.1:9/api/v10",
            metrics_address="127.0.0.1:0",
            log_level="WARNING",
        )
        self.started = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def count(self) -> int:
        with self.lock:
            return len(self.ids)

    def snapshot(self) -> set[int]:
        with self.lock:
            return set(self.ids)

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc
            self.started.set()

    async def _run(self) -> None:
        worker = Worker("e2e-counter", settings=self.settings)

        @worker.on("MESSAGE_CREATE")
        async def on_message(message: MessageCreate, ctx: Context) -> None:
            message_id = int(message.id)
            if (message_id >> 17) & 0x1F == FLOOD_WORKER_ID:
                with self.lock:
                    if message_id not in self.ids:
                        self.ids.add(message_id)
                        self.arrivals[message_id] = time.time()

        async with worker.running():
            self.started.set()
            while not self.stop.is_set():
                await asyncio.sleep(0.2)


def gateway_republished_at(gateway: str, since: float) -> float | None:
    """When the gateway's publisher logged its reconnection after `since` (docker's timestamp)."""
    output = docker(
        "logs", "--timestamps", "--since", f"{since:.3f}", gateway, timeout=30, check=False
    )
    lines = output.splitlines()
    for line in lines:
        if "reconnected to RabbitMQ" in line:
            stamp = line.split(" ", 1)[0]
            # RFC 3339 with nanoseconds: keep microseconds for fromisoformat
            stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
            return datetime.fromisoformat(stamp).timestamp()
    return None


def flood_with_kill(
    sim: Simulator, cluster: Cluster, counter: Counter, victim_of: Any, gateway: str, phase: str
) -> dict[str, Any]:
    """Flood, kill the node `victim_of()` names mid-flood, then count what arrived."""
    before = counter.snapshot()
    result: dict[str, Any] = {}

    def flood() -> None:
        """Flood for FLOOD_SECONDS: a flood ends when its session's connection does (the gateway
        RESUMEs after losing its broker node), so a new one starts on the resumed session."""
        end = time.monotonic() + FLOOD_SECONDS
        sent = 0
        while (left := end - time.monotonic()) > 0.2:
            body = {"count": max(1, int(left * FLOOD_RATE)), "rate": FLOOD_RATE, "wait": True}
            try:
                answer = http("POST", f"{sim.base}/_sim/flood", body, timeout=300)
            except urllib.error.HTTPError as exc:
                if exc.code != 404:  # 404: no live session right now (resuming): try again
                    result["error"] = repr(exc)
                    return
                time.sleep(0.2)
                continue
            except Exception as exc:  # reported below
                result["error"] = repr(exc)
                return
            sent += int(answer["sent"])
        result["sent"] = sent

    victim = victim_of()
    publisher_on = cluster.publisher_node()
    log(f"{phase}: flooding {FLOOD_RATE}/s per session for {FLOOD_SECONDS:g}s; victim {victim}")
    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    time.sleep(KILL_AFTER)
    killed_at = cluster.kill(victim)
    flooder.join(300)
    if "error" in result or "sent" not in result:
        raise CheckFailed(f"{phase}: the flood failed: {result}")
    sent = int(result["sent"])
    log(f"{phase}: flood done: {sent} events sent")

    def all_arrived() -> bool | None:
        return True if len(counter.snapshot() - before) >= sent else None

    deadline = time.monotonic() + DELIVERY_WAIT
    with contextlib.suppress(CheckFailed):
        wait_for(f"all {sent} flooded events at the counter", all_arrived, deadline, every=1.0)
    got = counter.snapshot() - before
    republished = gateway_republished_at(gateway, killed_at - 1)
    failover = None if republished is None else round(max(0.0, republished - killed_at), 2)
    with counter.lock:
        arrivals = sorted(t for i, t in counter.arrivals.items() if i in got)
    # The longest pause in arrivals at the counter from the kill on: what a consumer notices.
    around = [killed_at, *(t for t in arrivals if t > killed_at)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(around)]
    outcome = {
        "phase": phase,
        "killed_node": victim,
        "gateway_publisher_was_on": publisher_on,
        "sent": sent,
        "received_distinct": len(got),
        "lost": max(0, sent - len(got)),
        "kill_to_gateway_republish_s": failover,
        "longest_pause_at_counter_after_kill_s": round(max(gaps), 2) if gaps else None,
    }
    log(f"{phase}: {json.dumps(outcome)}")
    if publisher_on == victim and failover is None:
        raise CheckFailed(f"{phase}: no 'reconnected to RabbitMQ' in the gateway's log")
    if outcome["lost"]:
        raise CheckFailed(f"{phase}: {outcome['lost']} of {sent} flooded events never arrived")
    return outcome


def wait_rejoined(cluster: Cluster, name: str) -> float:
    """The node is back in the cluster and every quorum queue has all its members online."""
    started = time.monotonic()
    deadline = started + REJOIN_WAIT

    def running() -> bool | None:
        out = cluster.ctl("eval", "length(rabbit_nodes:list_running()).", node=name)
        return True if out.strip() == "3" else None

    wait_for(f"node {name} to rejoin the cluster", running, deadline, every=2.0)

    def replicated() -> dict[str, tuple[int, int]] | None:
        queues = cluster.quorum_queues()
        lagging = {q: m for q, m in queues.items() if m[1] < 3 or m[0] < 3}
        return queues if queues and not lagging else None

    queues = wait_for("every quorum queue to have 3 online members", replicated, deadline, 3.0)
    for node in cluster.nodes:
        cluster.ctl("check_if_node_is_quorum_critical", tool="rabbitmq-queues", node=node)
    log(f"node {name} rejoined; {len(queues)} quorum queues fully replicated; none critical")
    return round(time.monotonic() - started, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", required=True)
    parser.add_argument("--amqp-url", required=True, help="comma-separated URLs of the 3 nodes")
    parser.add_argument("--group", default="gateway")
    parser.add_argument("--node", action="append", default=[], help="hostname=container")
    parser.add_argument("--gateway", required=True, help="the gateway's container")
    parser.add_argument("--ready", action="append", default=[])
    parser.add_argument("--report", required=True, help="JSON results go here")
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()

    cluster = Cluster(dict(item.split("=", 1) for item in args.node))
    sim = Simulator(args.simulator)
    counter = Counter(args.amqp_url, args.group)
    thread = threading.Thread(target=counter.run, daemon=True)
    report: dict[str, Any] = {"phases": []}
    try:
        deadline = time.monotonic() + args.timeout
        guilds = wait_for("the simulator's control API", lambda: sim.guilds() or None, deadline)
        if len(guilds) < 3:
            raise CheckFailed(f"need 3 guilds (SIM_GUILDS=3), the simulator has {len(guilds)}")
        check_ready(args.ready, deadline)
        thread.start()
        counter.started.wait(120)
        if counter.error is not None:
            raise CheckFailed(f"the counter worker failed: {counter.error!r}")
        members = cluster.quorum_queues()
        log(f"quorum queues (members, online): {members}")
        if not members or any(m != (3, 3) for m in members.values()):
            raise CheckFailed(f"quorum queues not on all three nodes: {members}")
        ping_guild = sim.guild(str(guilds[0]["id"]))
        check_ping(sim, ping_guild, time.monotonic() + 120)

        # 1. the gateway publisher's node
        phase1 = flood_with_kill(
            sim, cluster, counter, cluster.publisher_node, args.gateway, "publisher-node"
        )
        check_ping(sim, ping_guild, time.monotonic() + 120)
        check_slash_ping(sim, ping_guild, time.monotonic() + 120)
        check_raid(sim, sim.guild(str(guilds[-1]["id"])), time.monotonic() + 120)
        report["phases"].append(phase1)

        # 2. it comes back
        cluster.start(phase1["killed_node"])
        report["rejoin_seconds"] = wait_rejoined(cluster, phase1["killed_node"])

        # 3. the node leading the ping worker's queue
        ping_queue = f"{args.group}.ping"
        phase3 = flood_with_kill(
            sim,
            cluster,
            counter,
            lambda: cluster.leader_of(ping_queue),
            args.gateway,
            "queue-leader-node",
        )
        check_ping(sim, ping_guild, time.monotonic() + 120)
        check_slash_ping(sim, ping_guild, time.monotonic() + 120)
        check_raid(sim, sim.guild(str(guilds[-2]["id"])), time.monotonic() + 120)
        report["phases"].append(phase3)
        cluster.start(phase3["killed_node"])
    except CheckFailed as exc:
        log(f"FAILED: {exc}")
        report["failed"] = str(exc)
        return 1
    finally:
        counter.stop.set()
        thread.join(30)
        Path(args.report).write_text(json.dumps(report, indent=2))
    log("all cluster checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
