"""`spectacles-gateway [-c gateway.toml] [run|check-config|unblock|status]`: the composition root.

The environment is read here, once. Exit codes: 0 after a clean stop, 1 when the gateway could
not run (no shard left, RabbitMQ or Discord unreachable at start-up), 2 for a bad configuration.
`unblock` lifts the fatal-close block of the configured token (see `fatal_block.py`) once the
operator fixed its cause; a gateway waiting on the block starts within a few seconds. `status`
shows which process owns which shard in auto mode (`shards.ids = "auto"`), as heard on RabbitMQ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from spectacles.broker.broker import Broker
from spectacles.broker.errors import BrokerError
from spectacles.broker.settings import BrokerSettings
from spectacles.observability import configure_logging, get_logger, register_secret
from spectacles.settings import exit_config_error

from .cluster import observe_cluster
from .config import GatewayConfig, format_shard_ids, load_config
from .errors import ConfigError, GatewayError
from .fatal_block import FatalBlockStore
from .service import EXIT_CONFIG, EXIT_FATAL, fetch_gateway_bot, run_service

__all__ = ["EXIT_CONFIG", "main"]

DEFAULT_CONFIG: Final = "gateway.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spectacles-gateway",
        description="Relay Discord gateway events into RabbitMQ.",
    )
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help=f"path to the TOML config (default: $GATEWAY_CONFIG, else ./{DEFAULT_CONFIG} when it "
        "exists; "
        "environment variables override it)",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "check-config", "unblock", "status"),
        default="run",
        help="run the gateway (default), print the effective config with secrets redacted, "
        "lift the fatal-close block of the configured token (after fixing its cause), or show "
        "which gateway process owns which shard (auto mode)",
    )
    parser.add_argument("--json", action="store_true", help="status: print JSON instead of a table")
    return parser


def _config_path(given: Path | None, env: Mapping[str, str]) -> Path | None:
    """`--config`, else `GATEWAY_CONFIG` (the image sets it), else `./gateway.toml` if present."""
    if given is not None:
        return given
    if env.get("GATEWAY_CONFIG"):
        return Path(env["GATEWAY_CONFIG"])
    default = Path(DEFAULT_CONFIG)
    return default if default.exists() else None


def _load(path: Path | None, env: Mapping[str, str]) -> GatewayConfig:
    try:
        return load_config(path, env)
    except ConfigError as exc:
        exit_config_error("spectacles-gateway", exc)


def _run(config: GatewayConfig) -> int:

    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_service(config))
    result: int = uvloop.run(run_service(config))
    return result


async def _unblock(config: GatewayConfig) -> int:
    settings = BrokerSettings(amqp_url=config.amqp_url, group=config.broker_group)
    try:
        broker = await Broker.connect(settings, connection_name="spectacles-gateway:unblock")
    except BrokerError as exc:
        print(f"spectacles-gateway: RabbitMQ is unreachable: {exc}", file=sys.stderr)
        return EXIT_FATAL
    store = FatalBlockStore(broker, config.token, config.gateway.fatal_block)
    try:
        block = await store.load()
        await store.clear()
    finally:
        await store.close()
        await broker.close()
    if block is None:
        print(f"no fatal-close block for token {store.fingerprint}; nothing to lift")
    else:
        print(
            f"lifted the block of token {store.fingerprint} "
            f"(close {block.code} {block.policy.name})"
        )
    return 0


async def _status(config: GatewayConfig, as_json: bool) -> int:
    settings = BrokerSettings(amqp_url=config.amqp_url, group=config.broker_group)
    count = config.shards.count
    try:
        if count is None:
            count = (await fetch_gateway_bot(config.gateway.api_url, config.token)).shards
        view = await observe_cluster(settings, config.broker_group, count, config.cluster)
    except (BrokerError, GatewayError) as exc:
        print(f"spectacles-gateway: {exc}", file=sys.stderr)
        return EXIT_FATAL
    if as_json:
        print(json.dumps(view, indent=2))
    else:
        print(format_status(view))
    return 0 if view["members"] else EXIT_FATAL


def format_status(view: Mapping[str, Any]) -> str:
    """The `status` table: one line per process, then the shards nobody owns."""
    lines = [f"shard count {view['shard_count']}, {len(view['members'])} gateway process(es)"]
    for member in view["members"]:
        shards = member["shards"]
        states = ", ".join(f"{k}:{v}" for k, v in sorted(shards.items(), key=lambda i: int(i[0])))
        lines.append(
            f"  {member['host']} pid {member['pid']}: {len(shards)} shard(s) [{states or '-'}]"
        )
    unowned = view["unowned"]
    if not view["members"]:
        lines.append('  no gateway process in auto mode answered (is shards.ids = "auto"?)')
    lines.append(f"unowned shards: {format_shard_ids(unowned) if unowned else 'none'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `spectacles-gateway` console script."""
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    config = _load(_config_path(args.config, env), env)
    register_secret(config.token)
    for url in config.amqp_url.split(","):
        register_secret(urlsplit(url).password)
    if args.command == "check-config":
        print(json.dumps(config.redacted(), indent=2))
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        raise SystemExit(0)
    if args.command == "unblock":
        raise SystemExit(asyncio.run(_unblock(config)))
    if args.command == "status":
        raise SystemExit(asyncio.run(_status(config, args.json)))
    fmt = None if config.log.format == "auto" else config.log.format
    configure_logging(config.log.level, fmt, service="gateway")
    log = get_logger("spectacles.gateway")
    for warning in config.warnings:
        log.warning("configuration warning", detail=warning)
    raise SystemExit(_run(config))


if __name__ == "__main__":
    main()
