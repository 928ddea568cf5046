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
    metrics_port: int | None = None,
    session_store: str = "none",
    save_interval: float | None = None,
    log_level: str = "WARNING",
) -> Path:
    """A gateway.toml relaying MESSAGE_CREATE over zlib-stream.

    By default no metrics and no session store (the relay figures); the failover figure turns
    both on (`/cluster` on `metrics_port`, the amqp store) and runs `shard_ids = "auto"`.
    """
    metrics = "enabled = false" if metrics_port is None else f'address = "127.0.0.1:{metrics_port}"'
    save = "" if save_interval is None else f"save_interval = {save_interval}"
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
{metrics}

[session_store]
type = "{session_store}"
{save}

[log]
level = "{log_level}"
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
    metrics_port: int | None = None,
    session_store: str = "none",
    save_interval: float | None = None,
    log_level: str = "WARNING",
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
        metrics_port=metrics_port,
        session_store=session_store,
        save_interval=save_interval,
        log_level=log_level,
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
