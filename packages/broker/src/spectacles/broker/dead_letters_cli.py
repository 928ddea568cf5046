"""``spectacles-dead-letters``: list, replay or purge a worker's dead letters from a shell."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

from spectacles.settings import SettingError, exit_config_error

from .broker import Broker
from .dead_letters import list_dead, purge_dead, replay_dead
from .errors import BrokerError
from .settings import AmqpUrlError, BrokerSettings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spectacles-dead-letters",
        description="Inspect, replay or purge the dead letters of a worker "
        "(queue {group}.{worker}.dead). RabbitMQ from AMQP_URL, group from BROKER_GROUP.",
    )
    parser.add_argument("action", choices=("list", "replay", "purge"))
    parser.add_argument("worker", help="worker name, e.g. ping or raid-guard")
    parser.add_argument("--limit", type=int, default=None, help="at most this many messages")
    parser.add_argument("--group", default=None, help="broker group (default: BROKER_GROUP)")
    return parser


async def _run(args: argparse.Namespace) -> int:
    settings = BrokerSettings.from_env()
    if args.group:
        settings = dataclasses.replace(settings, group=args.group)
    broker = await Broker.connect(settings, connection_name="spectacles:dead-letters")
    try:
        if args.action == "list":
            for dead in await list_dead(broker, args.worker, limit=args.limit or 20):
                print(
                    f"{dead.message_id or '-'}  {dead.exchange or '(default)'}/{dead.routing_key}"
                    f"  attempts={dead.attempts}  {dead.size} B\n    error: {dead.error or '-'}"
                    f"\n    body:  {dead.preview}"
                )
        elif args.action == "replay":
            count = await replay_dead(broker, args.worker, limit=args.limit)
            print(f"replayed {count} message(s)")
        else:
            print(f"purged {await purge_dead(broker, args.worker)} message(s)")
    finally:
        await broker.close()
    return 0


def main() -> None:
    args = _parser().parse_args()
    try:
        code = asyncio.run(_run(args))
    except AmqpUrlError as exc:  # a bad AMQP_URL / AMQP_URL_ORDER: a config error
        print(f"spectacles-dead-letters: {exc}", file=sys.stderr)
        code = 2
    except SettingError as exc:  # a bad BROKER_GROUP
        exit_config_error("spectacles-dead-letters", exc)
    except BrokerError as exc:
        print(f"spectacles-dead-letters: {exc}", file=sys.stderr)
        code = 1
    except Exception as exc:  # passive declare on a missing queue, etc.: one clear line
        print(f"spectacles-dead-letters: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
