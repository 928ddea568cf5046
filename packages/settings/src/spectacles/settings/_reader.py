"""The source stack: an environment variable over a TOML table's key over the default.

A service builds one `SettingsReader` over its environment (and, when it has one, its parsed TOML
file), takes every key it knows with a typed parser, and calls `finish()` so that a key nobody
took is reported by name instead of being silently ignored. Every bad value becomes one
`SettingError` naming the key and, when the value came from there, the variable.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ._errors import Invalid, SettingError
from ._fields import Parser, suggest

__all__ = ["SettingsReader", "read_toml", "validate"]

T = TypeVar("T")


class SettingsReader:
    """One TOML table (the file's root by default) with the environment laid over it.

    An empty environment variable counts as unset. `error` is the `SettingError` subclass to raise,
    so a service keeps its own exception type in its own hierarchy.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        table: Mapping[str, Any] | None = None,
        *,
        prefix: str = "",
        error: type[SettingError] = SettingError,
    ) -> None:
        if table is not None and not isinstance(table, Mapping):
            raise error(prefix.rstrip(".") or "config", "must be a table")
        self._env: Mapping[str, str] = env if env is not None else {}
        self._table: dict[str, Any] = dict(table or {})
        self._prefix = prefix
        self._error = error
        self._known: list[str] = []

    def key(self, name: str) -> str:
        """The full dotted key of `name` in this table."""
        return f"{self._prefix}{name}"

    def fail(self, key: str, problem: str, choices: tuple[str, ...] = ()) -> SettingError:
        """An error of this reader's type for a check across keys (raise it)."""
        return self._error(key, problem, choices or None)

    def take(self, name: str, parse: Parser[T], default: T, *, env: str | None = None) -> T:
        """`env` when set and non-empty, else the table's `name`, else `default` (not parsed)."""
        self._known.append(name)
        present = name in self._table
        value = self._table.pop(name, None)
        raw = self._env.get(env) if env is not None else None
        if raw is not None and raw != "":
            return self._parse(parse, raw, name, env)
        if present:
            return self._parse(parse, value, name, None)
        return default

    def var(self, name: str, parse: Parser[T], default: T) -> T:
        """An environment-only setting: the variable `name` itself is the key."""
        raw = self._env.get(name)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except Invalid as exc:
            raise self._error(name, exc.problem, exc.choices or None) from None

    def section(self, name: str) -> SettingsReader:
        """The sub-table `name` (empty when absent), sharing this environment."""
        self._known.append(name)
        data = self._table.pop(name, {})
        if not isinstance(data, Mapping):
            raise self._error(self.key(name), "must be a table")
        return SettingsReader(self._env, data, prefix=f"{self.key(name)}.", error=self._error)

    def finish(self) -> None:
        """Refuse a key of this table that nothing took, naming it and the known keys."""
        if self._table:
            unknown = sorted(self._table)[0]
            raise self._error(
                self.key(unknown), f"unknown key{suggest(unknown, self._known)}", self._known
            )

    def _parse(self, parse: Parser[T], value: object, name: str, env: str | None) -> T:
        try:
            return parse(value)
        except Invalid as exc:
            raise self._error(self.key(name), exc.problem, exc.choices or None, env=env) from None


def validate(
    key: str, parse: Parser[T], value: object, error: type[SettingError] = SettingError
) -> T:
    """`value` checked by `parse` (for settings built in code), or an error naming `key`."""
    try:
        return parse(value)
    except Invalid as exc:
        raise error(key, exc.problem, exc.choices or None) from None


def read_toml(
    path: Path | None, key: str = "--config", error: type[SettingError] = SettingError
) -> dict[str, Any]:
    """The parsed TOML file at `path` (`{}` without one); a missing or broken file names `key`."""
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(key, f"file {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(key, f"{path} is not valid TOML: {exc}") from None
