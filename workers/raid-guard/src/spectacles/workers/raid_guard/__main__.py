"""Composition root of raid-guard: settings from the environment, the worker, run."""

from __future__ import annotations

import sys

from spectacles.workers.raid_guard.config import RaidConfig
from spectacles.workers.raid_guard.guard import build_worker


def main() -> None:
    """Console script ``spectacles-raid-guard``; a bad setting exits 2 naming its variable."""
    try:
        config = RaidConfig.from_env()
    except ValueError as exc:
        print(f"spectacles-raid-guard: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    build_worker(config, None)[0].run()


if __name__ == "__main__":
    main()
