"""`spectacles-gateway [--config gateway.toml] [check-config]` — the composition root.

The environment is read here, once. Exit codes: 0 after a clean stop, 1 when the gateway could
not run (no shard left, RabbitMQ or Discord unreachable at start-up), 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from spectacles.observability import configure_logging, get_logger, register_secret

from .config import GatewayConfig, load_config
from .errors import ConfigError
from .service import EXIT_CONFIG, run_service

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
        help=f"path to the TOML config (default: ./{DEFAULT_CONFIG} when it exists; "
        "environment variables override it)",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "check-config"),
        default="run",
        help="run the gateway (default) or print the effective config with secrets redacted",
    )
    return parser


def _config_path(given: Path | None) -> Path | None:
    if given is not None:
        return given
    default = Path(DEFAULT_CONFIG)
    return default if default.exists() else None


def _load(path: Path | None, env: Mapping[str, str]) -> GatewayConfig | None:
    try:
        return load_config(path, env)
    except ConfigError as exc:
        print(f"spectacles-gateway: configuration error: {exc}", file=sys.stderr)
        return None


def _run(config: GatewayConfig) -> int:

    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_service(config))
    result: int = uvloop.run(run_service(config))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `spectacles-gateway` console script."""
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    config = _load(_config_path(args.config), env)
    if config is None:
        raise SystemExit(EXIT_CONFIG)
    register_secret(config.token)
    for url in config.amqp_url.split(","):
        register_secret(urlsplit(url).password)
    if args.command == "check-config":
        print(json.dumps(config.redacted(), indent=2))
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        raise SystemExit(0)
    fmt = None if config.log.format == "auto" else config.log.format
    configure_logging(config.log.level, fmt, service="gateway")
    log = get_logger("spectacles.gateway")
    for warning in config.warnings:
        log.warning("configuration warning", detail=warning)
    raise SystemExit(_run(config))


if __name__ == "__main__":
    main()
