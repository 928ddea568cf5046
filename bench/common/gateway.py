"""Our gateway as a subprocess, configured for the benchmark through a TOML file."""

from __future__ import annotations

import sys
from pathlib import Path

from .procs import Proc


def write_config(
    path: Path,
    *,
    group: str,
    amqp_url: str,
    api_url: str,
    shard_count: int,
    identify_interval: float,
    shard_ids: str = "all",
    max_in_flight: int | None = None,
    token: str = "sim-token",
) -> Path:
    """A gateway.toml relaying MESSAGE_CREATE over zlib-stream; no metrics, no session store."""
    path.write_text(
        f"""token = "{token}"
events = ["MESSAGE_CREATE"]
intents = ["GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]

[broker]
type = "amqp"
group = "{group}"

[amqp]
url = "{amqp_url}"

[shards]
count = {shard_count}
ids = "{shard_ids}"

[gateway]
api_url = "{api_url}"
compress = "zlib-stream"
identify_interval = {identify_interval}
{"" if max_in_flight is None else f"max_in_flight = {max_in_flight}"}

[metrics]
enabled = false

[session_store]
type = "none"

[log]
level = "WARNING"
format = "json"
""",
        encoding="utf-8",
    )
    return path


def start_gateway(
    log_dir: Path,
    *,
    name: str,
    group: str,
    amqp_url: str,
    api_url: str,
    shard_count: int = 1,
    shard_ids: str = "all",
    identify_interval: float = 5.0,
    max_in_flight: int | None = None,
) -> Proc:
    """Start `python -m spectacles.gateway --config ...` (no `uv run` wrapper: one pid)."""
    config = write_config(
        log_dir / f"{name}.toml",
        group=group,
        amqp_url=amqp_url,
        api_url=api_url,
        shard_count=shard_count,
        shard_ids=shard_ids,
        identify_interval=identify_interval,
        max_in_flight=max_in_flight,
    )
    argv = [sys.executable, "-m", "spectacles.gateway", "--config", str(config)]
    # The environment would override the file: keep the caller's overrides out.
    env = {
        key: ""
        for key in (
            "DISCORD_TOKEN",
            "DISCORD_EVENTS",
            "DISCORD_INTENTS",
            "DISCORD_SHARD_COUNT",
            "DISCORD_SHARD_IDS",
            "AMQP_URL",
            "BROKER_GROUP",
            "DISCORD_API_URL",
            "DISCORD_GATEWAY_URL",
            "LOG_LEVEL",
            "LOG_FORMAT",
        )
    }
    return Proc(name, argv, log_dir, env=env)
