"""End-to-end assertions against a running demo stack, through the simulator's control API.

Run by tests/e2e/run.sh (stdlib only, so it needs nothing but python3):

    python3 tests/e2e/check_demo.py --simulator http://127.0.0.1:PORT \
        --ready http://127.0.0.1:P1/readyz --ready http://127.0.0.1:P2/readyz ...

Checks, each polling with a deadline:
1. every --ready URL answers 200 (gateway shards READY, workers consuming);
2. a `!ping` posted as a user gets a `Pong!` reply from the bot (the message goes simulator ->
   gateway -> RabbitMQ -> ping worker -> REST proxy -> simulator);
3. `/ping` used by a member (the simulator's control API) is answered `Pong! N ms` by the bot
   (the interaction goes simulator -> gateway (INTERACTION_CREATE) -> RabbitMQ -> ping worker ->
   REST proxy -> the simulator's interaction callback), and in time (Discord's 3 s);
4. a raid (25 joins of day-old accounts, 200 ms apart) makes raid-guard post exactly one alert and
   raise the guild's verification level.
Exits 0 when all pass, 1 with a message naming the failed check otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

PING_REPLY_WAIT = 20.0  # per attempt: a reply normally takes well under a second
RAID_JOINS = 25
RAID_INTERVAL_MS = 200
VERIFICATION_HIGH = 3
QUIET_AFTER_RAID = 8.0  # keep watching this long after the burst: a second alert would show up here


class CheckFailed(Exception):
    """One end-to-end check did not hold before its deadline."""


def log(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    """JSON request; returns the decoded body (None when empty). Raises on non-2xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


def wait_for(what: str, probe: Callable[[], T | None], deadline: float, every: float = 1.0) -> T:
    """Call `probe` until it returns a value other than None, or fail naming `what`."""
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            last_error, value = exc, None
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise CheckFailed(f"timed out waiting for {what}{detail}")
        time.sleep(every)


def as_list(payload: Any, key: str) -> list[dict[str, Any]]:
    """Accept both a bare JSON list and an object wrapping it under `key`."""
    if isinstance(payload, dict):
        payload = payload.get(key, [])
    if not isinstance(payload, list):
        raise ValueError(f"expected a list of {key}, got {type(payload).__name__}")
    return payload


class Simulator:
    """The few control-API calls the checks need."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def guilds(self) -> list[dict[str, Any]]:
        return as_list(http("GET", f"{self.base}/_sim/guilds"), "guilds")

    def guild(self, guild_id: str) -> dict[str, Any]:
        payload = http("GET", f"{self.base}/_sim/guilds/{guild_id}")
        return payload.get("guild", payload) if isinstance(payload, dict) else payload

    def messages(self, channel_id: str) -> list[dict[str, Any]]:
        return as_list(http("GET", f"{self.base}/_sim/channels/{channel_id}/messages"), "messages")

    def post_message(self, guild_id: str, channel_id: str, content: str) -> dict[str, Any]:
        url = f"{self.base}/_sim/guilds/{guild_id}/channels/{channel_id}/messages"
        payload = http("POST", url, {"content": content})
        return payload.get("message", payload) if "id" not in payload else payload

    def use_command(self, guild_id: str, channel_id: str, command: str) -> dict[str, Any]:
        url = f"{self.base}/_sim/guilds/{guild_id}/channels/{channel_id}/interactions"
        return dict(http("POST", url, {"command": command}))

    def interaction(self, interaction_id: str) -> dict[str, Any]:
        return dict(http("GET", f"{self.base}/_sim/interactions/{interaction_id}"))

    def join_members(self, guild_id: str, count: int, interval_ms: int, age_days: int) -> Any:
        body = {"count": count, "interval_ms": interval_ms, "account_age_days": age_days}
        return http("POST", f"{self.base}/_sim/guilds/{guild_id}/members", body)


def channel_ids(guild: dict[str, Any]) -> list[str]:
    """Text channel ids of a guild from the control API's description of it."""
    channels = guild.get("channels", [])
    ids = []
    for channel in channels:
        if isinstance(channel, dict):
            if channel.get("type", 0) in (0, 5):
                ids.append(str(channel["id"]))
        else:
            ids.append(str(channel))
    return ids


def channel_named(guild: dict[str, Any], wanted: str) -> str | None:
    for channel in guild.get("channels", []):
        if isinstance(channel, dict) and channel.get("name") == wanted:
            return str(channel["id"])
    return None


def verification_level(guild: dict[str, Any]) -> int:
    return int(guild["verification_level"])


def is_bot(message: dict[str, Any]) -> bool:
    return bool((message.get("author") or {}).get("bot"))


def replied_to(message: dict[str, Any]) -> str | None:
    reference = message.get("message_reference") or {}
    target = reference.get("message_id")
    return None if target is None else str(target)


def check_ready(urls: list[str], deadline: float) -> None:
    for url in urls:

        def probe(url: str = url) -> bool | None:
            try:
                http("GET", url, timeout=5.0)
            except urllib.error.HTTPError as exc:
                if exc.code == 503:
                    return None
                raise
            return True

        wait_for(f"{url} to answer 200", probe, deadline)
        log(f"ready: {url}")


def check_ping(sim: Simulator, guild: dict[str, Any], deadline: float) -> None:
    """Post `!ping` until one gets its `Pong!` reply (an early one may predate the consumers)."""
    gid = str(guild["id"])
    text_channels = [c for c in channel_ids(guild) if c != channel_named(guild, "mod-log")]
    if not text_channels:
        raise CheckFailed(f"guild {gid} has no text channel to post !ping in: {guild}")
    cid = text_channels[0]
    attempt = 0
    while True:
        attempt += 1
        sent = sim.post_message(gid, cid, "!ping")
        sent_id = str(sent["id"])
        log(f"posted !ping {sent_id} in channel {cid} (attempt {attempt})")

        def reply(sent_id: str = sent_id) -> dict[str, Any] | None:
            for message in sim.messages(cid):
                if replied_to(message) == sent_id and is_bot(message):
                    return message
            return None

        attempt_deadline = min(deadline, time.monotonic() + PING_REPLY_WAIT)
        try:
            answer = wait_for(f"a reply to !ping {sent_id}", reply, attempt_deadline, every=0.5)
        except CheckFailed:
            if time.monotonic() >= deadline:
                raise CheckFailed(f"no bot reply to any of {attempt} !ping messages") from None
            continue
        if not str(answer.get("content", "")).startswith("Pong!"):
            raise CheckFailed(f"the reply to !ping is not a Pong!: {answer.get('content')!r}")
        log(f"ping answered: {answer['content']!r}")
        return


def check_slash_ping(sim: Simulator, guild: dict[str, Any], deadline: float) -> None:
    """Use `/ping` until one is answered `Pong!` (the first may come before /ping is registered,
    or before the ping worker consumes: Discord then shows it as failed, and we try again)."""
    gid = str(guild["id"])
    cid = next(c for c in channel_ids(guild) if c != channel_named(guild, "mod-log"))
    attempt = 0
    while True:
        attempt += 1
        try:
            created = sim.use_command(gid, cid, "ping")
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() >= deadline:
                raise
            log("/ping is not registered yet; waiting for the ping worker to register it")
            time.sleep(1.0)
            continue
        interaction_id = str(created["id"])
        log(f"used /ping: interaction {interaction_id} (attempt {attempt})")

        def settled(interaction_id: str = interaction_id) -> dict[str, Any] | None:
            state = sim.interaction(interaction_id)
            return state if state["status"] in ("responded", "failed") else None

        attempt_deadline = min(deadline, time.monotonic() + PING_REPLY_WAIT)
        state = wait_for(f"an answer to /ping {interaction_id}", settled, attempt_deadline, 0.5)
        if state["status"] == "failed":
            if time.monotonic() >= deadline:
                raise CheckFailed(f"/ping never answered in time: {state.get('failure')}")
            log(f"/ping {interaction_id} failed ({state.get('failure')}); trying again")
            continue
        response = state["response"] or {}
        original = state.get("original") or {}
        content = str(original.get("content") or (response.get("data") or {}).get("content"))
        if not content.startswith("Pong!"):
            raise CheckFailed(f"the answer to /ping is not a Pong!: {state}")
        log(f"/ping answered: {content!r} (response type {response.get('type')})")
        return


def check_raid(sim: Simulator, guild: dict[str, Any], deadline: float) -> None:
    """A raid yields exactly one alert (a new bot message, not a Pong) and a raised verification."""
    gid = str(guild["id"])
    channels = channel_ids(guild)
    before_level = verification_level(sim.guild(gid))
    if before_level >= VERIFICATION_HIGH:
        raise CheckFailed(f"guild {gid} is already at verification level {before_level}")
    seen = {str(m["id"]) for cid in channels for m in sim.messages(cid)}

    def alerts() -> list[dict[str, Any]]:
        found = []
        for cid in channels:
            for message in sim.messages(cid):
                content = str(message.get("content", ""))
                if str(message["id"]) in seen or not is_bot(message) or content.startswith("Pong!"):
                    continue
                found.append(message)
        return found

    sim.join_members(gid, RAID_JOINS, RAID_INTERVAL_MS, 1)
    burst_end = time.monotonic() + RAID_JOINS * RAID_INTERVAL_MS / 1000
    log(f"raid started in guild {gid}: {RAID_JOINS} joins, {RAID_INTERVAL_MS} ms apart")

    first = wait_for("a raid alert", lambda: alerts() or None, deadline, every=0.5)
    log(f"alert posted: {str(first[0].get('content', ''))[:120]!r}")

    def raised_level() -> int | None:
        level = verification_level(sim.guild(gid))
        return level if level > before_level else None

    raised = wait_for("the verification level to be raised", raised_level, deadline, every=0.5)
    log(f"verification level raised: {before_level} -> {raised}")

    time.sleep(max(0.0, burst_end + QUIET_AFTER_RAID - time.monotonic()))
    final = alerts()
    if len(final) != 1:
        contents = [str(m.get("content", ""))[:80] for m in final]
        raise CheckFailed(f"expected exactly one raid alert, got {len(final)}: {contents}")
    log("exactly one alert for the raid")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", required=True, help="simulator base URL")
    parser.add_argument("--ready", action="append", default=[], help="a /readyz URL to wait for")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds for all checks")
    args = parser.parse_args()

    deadline = time.monotonic() + args.timeout
    sim = Simulator(args.simulator)
    try:
        guilds = wait_for("the simulator's control API", lambda: sim.guilds() or None, deadline)
        check_ready(args.ready, deadline)
        # Ping in the first guild, raid in the last: the checks cannot disturb each other.
        check_ping(sim, sim.guild(str(guilds[0]["id"])), deadline)
        check_slash_ping(sim, sim.guild(str(guilds[0]["id"])), deadline)
        check_raid(sim, sim.guild(str(guilds[-1]["id"])), deadline)
    except CheckFailed as exc:
        log(f"FAILED: {exc}")
        return 1
    log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
