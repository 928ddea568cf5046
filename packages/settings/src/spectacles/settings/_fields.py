"""Typed field parsers: each turns an environment string or a TOML value into one type.

A parser gets the raw value and either returns the typed value or raises `Invalid` saying what is
wrong; the reader adds the key. Text is accepted everywhere (environment variables are text), so
`"16"` is an integer both in the environment and in a TOML file.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Final, TypeVar

from ._errors import Invalid

__all__ = [
    "Parser",
    "Secret",
    "boolean",
    "choice",
    "enum",
    "integer",
    "listing",
    "number",
    "path",
    "seconds",
    "secret",
    "snowflake",
    "string",
    "suggest",
]

T = TypeVar("T")
E = TypeVar("E", bound=Enum)
Parser = Callable[[object], T]

_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION: Final = re.compile(r"^\s*([0-9.eE+-]+)\s*(ms|s|m|h)?\s*$")
# Discord ids are 64-bit.
_MAX_SNOWFLAKE: Final = (1 << 64) - 1


class Secret:
    """A value that never shows in repr, str or an error; `reveal()` hands it to its one user."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: pass it on, never print it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('[REDACTED]')" if self._value else "Secret('')"

    __str__ = __repr__


def suggest(name: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for a likely typo of one of `choices`, else an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected {what}, got {value!r}")
    return value.strip()


def string(*, lower: bool = False, upper: bool = False) -> Parser[str]:
    """Text, stripped (and case-folded when asked)."""

    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {type(value).__name__}")
        text = value.strip()
        return text.lower() if lower else text.upper() if upper else text

    return parse


def _show(bound: float | None) -> str:
    """A bound as people write it: `65536`, `0`, `2.5` (never `6.5536e+04`)."""
    return str(int(bound)) if bound is not None and float(bound).is_integer() else repr(bound)


def _bounds(
    value: float, ge: float | None, gt: float | None, le: float | None, lt: float | None
) -> None:
    """Raise `Invalid` naming the range when `value` is outside it."""
    low = f">= {_show(ge)}" if ge is not None else f"> {_show(gt)}" if gt is not None else None
    high = f"<= {_show(le)}" if le is not None else f"< {_show(lt)}" if lt is not None else None
    inside = (
        (ge is None or value >= ge)
        and (gt is None or value > gt)
        and (le is None or value <= le)
        and (lt is None or value < lt)
    )
    if inside:
        return
    if low and high:
        raise Invalid(f"must be {low} and {high}, got {value}")
    raise Invalid(f"must be {low or high}, got {value}")


def integer(
    *, ge: int | None = None, gt: int | None = None, le: int | None = None, lt: int | None = None
) -> Parser[int]:
    """A whole number within the given bounds."""

    def parse(value: object) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise Invalid(f"expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {value!r}")
        _bounds(value, ge, gt, le, lt)
        return value

    return parse


def number(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    what: str = "a number",
) -> Parser[float]:
    """A finite number within the given bounds (nan would pass every comparison)."""

    def parse(raw: object) -> float:
        value = raw
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise Invalid(f"expected {what}, got {raw!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"expected {what}, got {raw!r}")
        try:
            result = float(value)  # an int beyond a float's range raises OverflowError
        except OverflowError:
            result = math.inf
        if not math.isfinite(result):
            raise Invalid(f"expected a finite number, got {raw!r}")
        _bounds(result, ge, gt, le, lt)
        return result

    return parse


def seconds(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Parser[float]:
    """A duration in seconds (>= 0 unless bounded): a number, or `2.5`, `500ms`, `5m`, `1h`."""
    if ge is None and gt is None:
        ge = 0.0
    plain = number(ge=ge, gt=gt, le=le, lt=lt, what="a number of seconds (e.g. 2.5, 500ms, 5m)")

    def parse(value: object) -> float:
        if isinstance(value, str):
            match = _DURATION.match(value)
            if match is None:
                return plain(value)  # names nan/inf as not finite, anything else as not a number
            amount = plain(match.group(1))
            return plain(amount * _UNITS[match.group(2) or "s"])
        return plain(value)

    return parse


def boolean() -> Parser[bool]:
    """`true`/`false` in TOML; `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off` as text."""

    def parse(value: object) -> bool:
        if isinstance(value, bool):
            return value
        text = _text(value, "true or false").lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise Invalid(f"expected true or false (1/0), got {value!r}")

    return parse


def snowflake() -> Parser[int]:
    """A Discord id: digits only."""

    def parse(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_SNOWFLAKE:
            return value
        if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
            number = int(value.strip())
            if number <= _MAX_SNOWFLAKE:
                return number
        raise Invalid(f"expected a Discord id (digits only), got {value!r}")

    return parse


def choice(*options: str, upper: bool = False) -> Parser[str]:
    """One of `options`, case-insensitively; returns the option as spelled there."""
    by_fold = {option.casefold(): option for option in options}

    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise Invalid(f"unknown value {value!r}", options)
        found = by_fold.get(value.strip().casefold())
        if found is None:
            raise Invalid(f"unknown value {value!r}{suggest(value, options)}", options)
        return found.upper() if upper else found

    return parse


def enum(kind: type[E]) -> Parser[E]:
    """A member of the enum `kind`, by its value (case-insensitive)."""
    values = [str(member.value) for member in kind]
    pick = choice(*values)

    def parse(value: object) -> E:
        return kind(pick(value))

    return parse


def listing(item: Parser[T], *, spaces: bool = False) -> Parser[tuple[T, ...]]:
    """A TOML array, or comma-separated text (also space-separated with `spaces`).

    Empty items in text are skipped, so `"a, b,"` is two items; a bad item is named by position.
    """

    def parse(value: object) -> tuple[T, ...]:
        if isinstance(value, str):
            text = value.replace(",", " ") if spaces else value
            parts: list[object] = [p.strip() for p in text.split(None if spaces else ",")]
            items = [p for p in parts if p]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise Invalid(f"expected a list or comma-separated text, got {value!r}")
        parsed: list[T] = []
        for index, raw in enumerate(items, start=1):
            try:
                parsed.append(item(raw))
            except Invalid as exc:
                raise Invalid(f"item {index}: {exc.problem}", exc.choices) from None
        return tuple(parsed)

    return parse


def secret() -> Parser[Secret]:
    """Text that must not be shown: the parsed value and every error keep it hidden."""

    def parse(value: object) -> Secret:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {type(value).__name__}")
        return Secret(value.strip())

    return parse


def path(*, must_exist: bool = False) -> Parser[Path]:
    """A filesystem path (`~` expanded); with `must_exist`, one that exists."""

    def parse(value: object) -> Path:
        text = _text(value, "a path")
        if not text:
            raise Invalid("expected a path, got ''")
        result = Path(text).expanduser()
        if must_exist and not result.exists():
            raise Invalid(f"{text!r} does not exist")
        return result

    return parse
