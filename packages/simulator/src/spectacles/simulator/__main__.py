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
from collections.abc import Mapping, Sequence
from typing import TypeVar

from spectacles.settings import (
    Parser,
    Secret,
    SettingError,
    SettingsReader,
    boolean,
    exit_config_error,
    integer,
    number,
    seconds,
    secret,
    string,
)
from spectacles.simulator._config import SimulatorConfig
from spectacles.simulator._scenarios import (
    SCENARIOS,
    ScenarioSettings,
    parse_scenarios,
    run_scenarios,
)
from spectacles.simulator._server import Simulator
from spectacles.simulator._webhook_out import EndpointVerificationError

__all__ = ["build_parser", "main"]

T = TypeVar("T")


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The CLI; defaults come from SIM_* environment variables (a bad one: `SettingError`)."""
    read = SettingsReader(os.environ if env is None else env)

    def sim(name: str, parse: Parser[T], default: T) -> T:
        return read.var(f"SIM_{name}", parse, default)

    count, positive = integer(ge=0), integer(ge=1)
    p = argparse.ArgumentParser(
        prog="spectacles-sim",
        description="A local Discord (gateway, REST, control API, live view) on one port.",
    )
    p.add_argument(
        "--host", default=sim("HOST", string(), "127.0.0.1"), help="bind address [SIM_HOST]"
    )
    p.add_argument(
        "--port", type=int, default=sim("PORT", integer(ge=0, le=65535), 8000), help="[SIM_PORT]"
    )
    p.add_argument(
        "--token",
        default=sim("TOKEN", secret(), Secret("sim-token")).reveal(),
        help="the bot token to accept [SIM_TOKEN]",
    )
    p.add_argument("--guilds", type=int, default=sim("GUILDS", count, 2), help="[SIM_GUILDS]")
    p.add_argument(
        "--members", type=int, default=sim("MEMBERS", count, 20), help="per guild [SIM_MEMBERS]"
    )
    p.add_argument(
        "--channels",
        type=int,
        default=sim("CHANNELS", integer(ge=2), 3),
        help="text channels per guild, at least 2 [SIM_CHANNELS]",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=sim("SHARDS", positive, 1),
        help="recommended shard count reported by /gateway/bot [SIM_SHARDS]",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=sim("MAX_CONCURRENCY", positive, 1),
        help="identify buckets [SIM_MAX_CONCURRENCY]",
    )
    p.add_argument(
        "--identify-interval",
        type=float,
        default=sim("IDENTIFY_INTERVAL", seconds(), 5.0),
        help="seconds between IDENTIFYs per bucket [SIM_IDENTIFY_INTERVAL]",
    )
    p.add_argument(
        "--heartbeat-interval-ms",
        type=int,
        default=sim("HEARTBEAT_INTERVAL_MS", positive, 41250),
        help="[SIM_HEARTBEAT_INTERVAL_MS]",
    )
    p.add_argument(
        "--session-ttl",
        type=float,
        default=sim("SESSION_TTL", seconds(), 180.0),
        help="seconds a disconnected session stays resumable [SIM_SESSION_TTL]",
    )
    p.add_argument(
        "--scenario",
        default=sim("SCENARIO", string(), "idle"),
        help=f"comma-separated: {', '.join(SCENARIOS)} [SIM_SCENARIO]",
    )
    p.add_argument("--seed", type=int, default=sim("SEED", integer(), 1), help="[SIM_SEED]")
    p.add_argument(
        "--public-url",
        default=sim("PUBLIC_URL", string(), "") or None,
        help="URL clients reach this simulator at, e.g. http://simulator:8000 [SIM_PUBLIC_URL]",
    )
    p.add_argument(
        "--interactions-url",
        default=sim("INTERACTIONS_URL", string(), "") or None,
        help="POST interactions (Ed25519-signed) to this URL instead of the gateway "
        "[SIM_INTERACTIONS_URL]",
    )
    p.add_argument(
        "--no-rate-limits",
        action="store_true",
        default=not sim("RATE_LIMITS", boolean(), True),
        help="disable REST rate limits [SIM_RATE_LIMITS=off]",
    )
    p.add_argument(
        "--global-rate-limit",
        type=int,
        default=sim("GLOBAL_RATE_LIMIT", positive, 50),
        help="REST requests per second per bot [SIM_GLOBAL_RATE_LIMIT]",
    )
    p.add_argument(
        "--chat-interval", type=float, default=sim("CHAT_INTERVAL", seconds(), 4.0), help="seconds"
    )
    p.add_argument(
        "--raid-every", type=float, default=sim("RAID_EVERY", seconds(), 60.0), help="seconds"
    )
    p.add_argument("--raid-size", type=int, default=sim("RAID_SIZE", positive, 25))
    p.add_argument(
        "--flood-rate", type=float, default=sim("FLOOD_RATE", number(gt=0), 1000.0), help="events/s"
    )
    p.add_argument(
        "--log-level", default=read.var("LOG_LEVEL", string(), "") or None, help="[LOG_LEVEL]"
    )
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
    except SettingError as error:  # a bad SIM_* variable
        exit_config_error("spectacles-sim", error)
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
        _configure_logging(args.log_level, config.token)
    except SettingError as error:
        exit_config_error("spectacles-sim", error)
    except ValueError as error:  # an unknown scenario
        exit_config_error("spectacles-sim", SettingError("SIM_SCENARIO", str(error)))
    try:
        asyncio.run(_serve(args, config, scenarios))
    except EndpointVerificationError as error:
        print(f"spectacles-sim: interactions_url rejected: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
