"""Composition root of raid-guard: settings from the environment, the worker, run."""

from __future__ import annotations

from spectacles.settings import SettingError, exit_config_error
from spectacles.workers.raid_guard.config import RaidConfig
from spectacles.workers.raid_guard.guard import build_worker


def main() -> None:
    """Console script ``spectacles-raid-guard``; a bad setting exits 2 naming its variable."""
    try:
        config = RaidConfig.from_env()
    except SettingError as exc:
        exit_config_error("spectacles-raid-guard", exc)
    build_worker(config, None)[0].run()


if __name__ == "__main__":
    main()
