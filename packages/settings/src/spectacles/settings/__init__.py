"""One typed settings reader for every Spectacles service.

Environment variable over TOML file over default, typed parsers with bounds, unknown keys named,
secrets never printed, and one error format::

    DISCORD_SHARD_COUNT (shards.count): expected an integer, got 'abc'

An entry point catches `SettingError` and calls `exit_config_error(program, error)`: that one line
on stderr, exit code 2.
"""

from ._errors import EXIT_CONFIG, Invalid, SettingError, exit_config_error
from ._fields import (
    Parser,
    Secret,
    boolean,
    choice,
    enum,
    integer,
    listing,
    number,
    path,
    seconds,
    secret,
    snowflake,
    string,
    suggest,
)
from ._reader import SettingsReader, read_toml, validate

__all__ = [
    "EXIT_CONFIG",
    "Invalid",
    "Parser",
    "Secret",
    "SettingError",
    "SettingsReader",
    "boolean",
    "choice",
    "enum",
    "exit_config_error",
    "integer",
    "listing",
    "number",
    "path",
    "read_toml",
    "seconds",
    "secret",
    "snowflake",
    "string",
    "suggest",
    "validate",
]
