"""The one error every service raises for a bad setting, and how an entry point reports it."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Final, NoReturn

__all__ = ["EXIT_CONFIG", "Invalid", "SettingError", "exit_config_error"]

#: The exit code of every service started with a bad setting.
EXIT_CONFIG: Final = 2


class SettingError(ValueError):
    """A setting is missing or invalid.

    ``key`` is the name the service documents (a TOML key such as ``shards.count``, or the
    variable itself for services configured only by the environment); ``env`` is the variable the
    bad value came from, when it came from the environment. The text is always one line:
    ``DISCORD_SHARD_COUNT (shards.count): expected an integer, got 'abc'``.
    """

    def __init__(
        self,
        key: str,
        problem: str,
        choices: Iterable[str] | None = None,
        *,
        env: str | None = None,
    ) -> None:
        self.key = key
        self.problem = problem
        self.choices: tuple[str, ...] = tuple(choices) if choices is not None else ()
        self.env = env
        where = key if env is None or env == key else f"{env} ({key})"
        message = f"{where}: {problem}"
        if self.choices:
            message += f" (valid: {', '.join(self.choices)})"
        super().__init__(message)


class Invalid(ValueError):
    """Raised by a field parser: what is wrong, without the key (the reader adds it)."""

    def __init__(self, problem: str, choices: Iterable[str] = ()) -> None:
        self.problem = problem
        self.choices = tuple(choices)
        super().__init__(problem)


def exit_config_error(program: str, error: SettingError) -> NoReturn:
    """Print ``program: configuration error: <one line>`` to stderr and exit with code 2."""
    print(f"{program}: configuration error: {error}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)
