"""`spectacles-sim`: run the Discord simulator from the command line (or a container).

Every flag has an environment variable (SIM_<FLAG>), read once here; flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from spectacles.simulator._config import SimulatorConfig, SimulatorConfigError
from spectacles.simulator._scenarios import (
    SCENARIOS,
    ScenarioSettings,
    parse_scenarios,
    run_scenarios,
)
from spectacles.simulator._server import Simulator
from spectacles.simulator._webhook_out import EndpointVerificationError

__all__ = ["build_parser", "main"]


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SIM_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    """The CLI; defaults come from SIM_* environment variables."""
    p = argparse.ArgumentParser(
        prog="spectacles-sim",
        description="A local Discord (gateway, REST, control API, live view) on one port.",
    )
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="bind address [SIM_HOST]")
    p.add_argument("--port", type=int, default=int(_env("PORT", "8000")), help="[SIM_PORT]")
    p.add_argument(
        "--token", default=_env("TOKEN", "sim-token"), help="the bot token to accept [SIM_TOKEN]"
    )
    p.add_argument("--guilds", type=int, default=int(_env("GUILDS", "2")), help="[SIM_GUILDS]")
    p.add_argument(
        "--members", type=int, default=int(_env("MEMBERS", "20")), help="per guild [SIM_MEMBERS]"
    )
    p.add_argument(
        "--channels",
        type=int,
        default=int(_env("CHANNELS", "3")),
        help="text channels per guild, at least 2 [SIM_CHANNELS]",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=int(_env("SHARDS", "1")),
        help="recommended shard count reported by /gateway/bot [SIM_SHARDS]",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=int(_env("MAX_CONCURRENCY", "1")),
        help="identify buckets [SIM_MAX_CONCURRENCY]",
    )
    p.add_argument(
        "--identify-interval",
        type=float,
        default=float(_env("IDENTIFY_INTERVAL", "5.0")),
        help="seconds between IDENTIFYs per bucket [SIM_IDENTIFY_INTERVAL]",
    )
    p.add_argument(
        "--heartbeat-interval-ms",
        type=int,
        default=int(_env("HEARTBEAT_INTERVAL_MS", "41250")),
        help="[SIM_HEARTBEAT_INTERVAL_MS]",
    )
    p.add_argument(
        "--session-ttl",
        type=float,
        default=float(_env("SESSION_TTL", "180")),
        help="seconds a disconnected session stays resumable [SIM_SESSION_TTL]",
    )
    p.add_argument(
        "--scenario",
        default=_env("SCENARIO", "idle"),
        help=f"comma-separated: {', '.join(SCENARIOS)} [SIM_SCENARIO]",
    )
    p.add_argument("--seed", type=int, default=int(_env("SEED", "1")), help="[SIM_SEED]")
    p.add_argument(
        "--public-url",
        default=_env("PUBLIC_URL", "") or None,
        help="URL clients reach this simulator at, e.g. http://simulator:8000 [SIM_PUBLIC_URL]",
    )
    p.add_argument(
        "--interactions-url",
        default=_env("INTERACTIONS_URL", "") or None,
        help="POST interactions (Ed25519-signed) to this URL instead of the gateway "
        "[SIM_INTERACTIONS_URL]",
    )
    p.add_argument(
        "--no-rate-limits",
        action="store_true",
        default=_env("RATE_LIMITS", "on").lower() in ("off", "0", "false", "no"),
        help="disable REST rate limits [SIM_RATE_LIMITS=off]",
    )
    p.add_argument(
        "--global-rate-limit",
        type=int,
        default=int(_env("GLOBAL_RATE_LIMIT", "50")),
        help="REST requests per second per bot [SIM_GLOBAL_RATE_LIMIT]",
    )
    p.add_argument(
        "--chat-interval", type=float, default=float(_env("CHAT_INTERVAL", "4")), help="seconds"
    )
    p.add_argument(
        "--raid-every", type=float, default=float(_env("RAID_EVERY", "60")), help="seconds"
    )
    p.add_argument("--raid-size", type=int, default=int(_env("RAID_SIZE", "25")))
    p.add_argument(
        "--flood-rate", type=float, default=float(_env("FLOOD_RATE", "1000")), help="events/s"
    )
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL"), help="[LOG_LEVEL]")
    return p


def _configure_logging(level: str | None, token: str) -> None:
    try:
        from spectacles.observability import configure_logging, register_secret
    except ImportError:  # pragma: no cover - observability is a declared dependency
        return
    register_secret(token)
    configure_logging(level, service="simulator")


async def _serve(
    args: argparse.Namespace, config: SimulatorConfig, scenarios: Sequence[str]
) -> None:
    settings = ScenarioSettings(
        chat_interval=args.chat_interval,
        raid_every=args.raid_every,
        raid_size=args.raid_size,
        flood_rate=args.flood_rate,
    )
    async with Simulator(config, host=args.host, port=args.port) as sim:
        print(
            "Spectacles Discord simulator\n"
            f"  base     {sim.base_url}\n"
            f"  api      {sim.api_url}\n"
            f"  gateway  {sim.gateway_url}\n"
            f"  control  {sim.control_url}\n"
            f"  ui       {sim.ui_url}\n"
            f"  key      {sim.signing_key.public_hex} (application public key, Ed25519)\n"
            f"  interactions {config.interactions_url or 'gateway (INTERACTION_CREATE)'}\n"
            f"  listens  {args.host}:{sim.port}\n"
            f"  scenario {','.join(scenarios) or 'idle'}; "
            f"{config.guilds} guild(s), {config.shards} shard(s)",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        tasks = run_scenarios(sim, scenarios, settings)
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `spectacles-sim`."""
    try:
        args = build_parser().parse_args(argv)
    except ValueError as error:  # a SIM_* variable that is not a number
        sys.exit(f"spectacles-sim: bad environment value: {error}")
    try:
        scenarios = parse_scenarios(args.scenario)
        config = SimulatorConfig(
            token=args.token,
            seed=args.seed,
            guilds=args.guilds,
            members_per_guild=args.members,
            channels_per_guild=args.channels,
            shards=args.shards,
            max_concurrency=args.max_concurrency,
            identify_interval=args.identify_interval,
            heartbeat_interval_ms=args.heartbeat_interval_ms,
            session_ttl=args.session_ttl,
            rate_limits_enabled=not args.no_rate_limits,
            global_rate_limit=args.global_rate_limit,
            public_url=args.public_url,
            interactions_url=args.interactions_url,
        )
    except (SimulatorConfigError, ValueError) as error:
        sys.exit(f"spectacles-sim: {error}")
    _configure_logging(args.log_level, config.token)
    try:
        asyncio.run(_serve(args, config, scenarios))
    except EndpointVerificationError as error:
        print(f"spectacles-sim: interactions_url rejected: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
