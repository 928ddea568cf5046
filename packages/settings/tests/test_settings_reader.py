"""The settings reader: every parser, its bounds, the source stack, secrets, unknown keys."""

from __future__ import annotations

import subprocess
import sys
from enum import StrEnum
from pathlib import Path

import pytest

from spectacles.settings import (
    Secret,
    SettingError,
    SettingsReader,
    boolean,
    choice,
    enum,
    integer,
    listing,
    number,
    path,
    read_toml,
    seconds,
    secret,
    snowflake,
    string,
)


def error_of(reader: SettingsReader, name: str, parse: object, **kw: object) -> SettingError:
    with pytest.raises(SettingError) as info:
        reader.take(name, parse, None, **kw)  # type: ignore[arg-type]
    return info.value


def test_env_wins_over_file_which_wins_over_default() -> None:
    table = {"count": 4, "other": 7}
    env = {"COUNT": "16", "EMPTY": ""}
    reader = SettingsReader(env, table)
    assert reader.take("count", integer(), 1, env="COUNT") == 16
    assert reader.take("other", integer(), 1, env="EMPTY") == 7  # empty variable = unset
    assert reader.take("missing", integer(), 1, env="NOPE") == 1
    reader.finish()


def test_the_one_error_format_names_variable_and_key() -> None:
    reader = SettingsReader({"DISCORD_SHARD_COUNT": "abc"}, {}).section("shards")
    error = error_of(reader, "count", integer(), env="DISCORD_SHARD_COUNT")
    assert str(error) == "DISCORD_SHARD_COUNT (shards.count): expected an integer, got 'abc'"
    assert (error.key, error.env) == ("shards.count", "DISCORD_SHARD_COUNT")
    from_file = error_of(SettingsReader({}, {"count": "abc"}), "count", integer())
    assert str(from_file) == "count: expected an integer, got 'abc'"
    with pytest.raises(SettingError) as info:
        SettingsReader({"WORKERS": "x"}).var("WORKERS", integer(), 1)
    assert str(info.value) == "WORKERS: expected an integer, got 'x'"
    assert info.value.key == "WORKERS"


def test_unknown_key_is_named_with_a_suggestion_and_the_known_keys() -> None:
    reader = SettingsReader({}, {"gateway": {"compres": "none", "url": ""}})
    gw = reader.section("gateway")
    gw.take("url", string(), "")
    gw.take("compress", string(), "")
    with pytest.raises(SettingError) as info:
        gw.finish()
    assert info.value.key == "gateway.compres"
    assert "did you mean 'compress'?" in str(info.value)
    assert info.value.choices == ("url", "compress")
    bad_table = SettingsReader({}, {"gateway": 3})
    with pytest.raises(SettingError, match="gateway: must be a table"):
        bad_table.section("gateway")


def test_custom_error_type_is_raised() -> None:
    class MyError(SettingError):
        pass

    with pytest.raises(MyError):
        SettingsReader({}, {"x": 1, "y": 2}, error=MyError).finish()


@pytest.mark.parametrize(
    ("parse", "raw", "expected"),
    [
        (integer(), "42", 42),
        (integer(), 42, 42),
        (integer(ge=1, le=3), " 3 ", 3),
        (number(), "2.5", 2.5),
        (number(gt=0, lt=3), 2, 2.0),
        (seconds(), "1.5", 1.5),
        (seconds(), "500ms", 0.5),
        (seconds(), "5m", 300.0),
        (seconds(), "1h", 3600.0),
        (seconds(), 10, 10.0),
        (boolean(), True, True),
        (boolean(), "yes", True),
        (boolean(), "0", False),
        (boolean(), "OFF", False),
        (snowflake(), "175928847299117063", 175928847299117063),
        (snowflake(), 1, 1),
        (choice("quorum", "classic"), "CLASSIC", "classic"),
        (choice("DEBUG", "INFO"), "debug", "DEBUG"),
        (listing(integer()), "1, 2,,3,", (1, 2, 3)),
        (listing(integer()), [1, 2], (1, 2)),
        (listing(snowflake(), spaces=True), "1 2,3", (1, 2, 3)),
        (string(upper=True), " ready ", "READY"),
        (path(), "~/x", Path("~/x").expanduser()),
    ],
)
def test_parsers_accept(parse: object, raw: object, expected: object) -> None:
    assert SettingsReader({}, {"k": raw}).take("k", parse, None) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("parse", "raw", "problem"),
    [
        (integer(), "1.5", "expected an integer, got '1.5'"),
        (integer(), True, "expected an integer, got True"),
        (integer(), 1.0, "expected an integer, got 1.0"),
        (integer(ge=1), 0, "must be >= 1, got 0"),
        (integer(ge=65536), "1024", "must be >= 65536, got 1024"),
        (number(gt=0.5), "0.25", "must be > 0.5, got 0.25"),
        (integer(ge=1, le=65535), "70000", "must be >= 1 and <= 65535, got 70000"),
        (number(gt=0, lt=3), "3", "must be > 0 and < 3, got 3.0"),
        (number(), "nan", "expected a finite number, got 'nan'"),
        (number(), "inf", "expected a finite number, got 'inf'"),
        (number(), "soon", "expected a number, got 'soon'"),
        (number(), 10**400, "expected a finite number"),
        (seconds(), "-1", "must be >= 0, got -1.0"),
        (seconds(), "inf", "expected a finite number, got 'inf'"),
        (
            seconds(),
            "5 parsecs",
            "expected a number of seconds (e.g. 2.5, 500ms, 5m), got '5 parsecs'",
        ),
        (seconds(gt=0), "0ms", "must be > 0, got 0.0"),
        (boolean(), "maybe", "expected true or false (1/0), got 'maybe'"),
        (boolean(), 1, "expected true or false, got 1"),
        (snowflake(), "#mod-log", "expected a Discord id (digits only), got '#mod-log'"),
        (snowflake(), "-5", "expected a Discord id (digits only), got '-5'"),
        (snowflake(), str(1 << 64), "expected a Discord id (digits only)"),
        (listing(snowflake()), "1,x", "item 2: expected a Discord id (digits only), got 'x'"),
        (listing(integer()), 5, "expected a list or comma-separated text, got 5"),
        (string(), 5, "expected a string, got int"),
        (path(), "", "expected a path, got ''"),
        (path(must_exist=True), "/no/such/file", "'/no/such/file' does not exist"),
    ],
)
def test_parsers_refuse_naming_the_problem(parse: object, raw: object, problem: str) -> None:
    error = error_of(SettingsReader({}, {"k": raw}), "k", parse)
    assert error.key == "k"
    assert problem in error.problem


def test_choice_and_enum_list_the_valid_values() -> None:
    class Action(StrEnum):
        ALERT = "alert"
        KICK = "kick"

    reader = SettingsReader({"ACTION": "Kick"})
    assert reader.var("ACTION", enum(Action), Action.ALERT) is Action.KICK
    with pytest.raises(SettingError) as info:
        SettingsReader({"ACTION": "kik"}).var("ACTION", enum(Action), Action.ALERT)
    assert str(info.value) == (
        "ACTION: unknown value 'kik'; did you mean 'kick'? (valid: alert, kick)"
    )
    assert info.value.choices == ("alert", "kick")


def test_secret_is_never_printed() -> None:
    value = "hunter2-very-secret"
    token = SettingsReader({"TOKEN": f" {value} "}).var("TOKEN", secret(), Secret(""))
    assert token.reveal() == value
    assert value not in repr(token) and value not in str(token) and value not in f"{token}"
    assert token == Secret(value) and bool(token) and not Secret("")
    with pytest.raises(SettingError) as info:
        SettingsReader({}, {"token": 12345678}).take("token", secret(), Secret(""))
    assert "12345678" not in str(info.value)


def test_read_toml_names_the_file_key(tmp_path: Path) -> None:
    good = tmp_path / "a.toml"
    good.write_text("[shards]\ncount = 2\n")
    assert read_toml(good) == {"shards": {"count": 2}}
    assert read_toml(None) == {}
    broken = tmp_path / "b.toml"
    broken.write_text("token = \n")
    with pytest.raises(SettingError, match=r"^--config: .*not valid TOML"):
        read_toml(broken)
    with pytest.raises(SettingError, match=r"^--config: file .* not found"):
        read_toml(tmp_path / "missing.toml")


def test_exit_config_error_prints_one_line_and_exits_2() -> None:
    code = (
        "from spectacles.settings import SettingsReader, integer, exit_config_error, SettingError\n"
        "try:\n"
        "    SettingsReader({'N': 'abc'}).var('N', integer(), 1)\n"
        "except SettingError as e:\n"
        "    exit_config_error('prog', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "prog: configuration error: N: expected an integer, got 'abc'\n"
