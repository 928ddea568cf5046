from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spectacles.gateway import ConfigError, parse_config, parse_shard_ids
from spectacles.gateway.config import format_shard_ids, load_config
from spectacles.models import Intents

BASE = {"token": "tok", "events": ["READY", "MESSAGE_CREATE"], "intents": ["GUILDS"]}


def config_error(data: dict[str, object], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    return info.value


def test_parse_config_when_minimal_uses_defaults() -> None:
    config = parse_config(BASE, {})
    assert config.token == "tok"
    assert config.events == frozenset({"READY", "MESSAGE_CREATE"})
    assert config.intents == Intents.GUILDS
    assert config.gateway.compress == "zlib-stream"
    assert config.broker_group == "gateway"
    assert config.shards.count is None and config.shards.ids is None
    assert config.metrics.address == "0.0.0.0:8080"
    assert config.session_store.type == "amqp"


def test_parse_config_when_env_overrides_file() -> None:
    env = {
        "DISCORD_TOKEN": "envtok",
        "DISCORD_EVENTS": "GUILD_CREATE, MESSAGE_CREATE",
        "DISCORD_INTENTS": "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT",
        "DISCORD_SHARD_COUNT": "16",
        "DISCORD_SHARD_IDS": "0-3,8",
        "DISCORD_API_URL": "http://127.0.0.1:9/api/v10",
        "DISCORD_GATEWAY_URL": "ws://127.0.0.1:9/gateway",
        "AMQP_URL": "amqp://u:secret@rabbit:5672/",
        "BROKER_GROUP": "bot",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json",
    }
    config = parse_config(BASE, env)
    assert config.token == "envtok"
    assert config.events == {"GUILD_CREATE", "MESSAGE_CREATE"}
    assert config.intents == Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT
    assert config.shards.count == 16
    assert config.shards.ids == (0, 1, 2, 3, 8)
    assert config.gateway.api_url == "http://127.0.0.1:9/api/v10"
    assert config.gateway.url == "ws://127.0.0.1:9/gateway"
    assert config.amqp_url == "amqp://u:secret@rabbit:5672/"
    assert config.broker_group == "bot"
    assert config.log.level == "DEBUG" and config.log.format == "json"
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("data", "key", "choice"),
    [
        ({**BASE, "tokn": "x"}, "tokn", "token"),
        ({**BASE, "gateway": {"compres": "zlib-stream"}}, "gateway.compres", "compress"),
        ({**BASE, "intents": ["GUILDS", "GUILD_MESAGES"]}, "intents", "GUILD_MESSAGES"),
        ({**BASE, "events": ["MESAGE_CREATE"]}, "events", "MESSAGE_CREATE"),
        ({**BASE, "gateway": {"compress": "gzip"}}, "gateway.compress", "zstd-stream"),
        ({**BASE, "session_store": {"type": "redis"}}, "session_store.type", "file"),
        ({**BASE, "broker": {"type": "kafka"}}, "broker.type", "amqp"),
    ],
)
def test_parse_config_when_unknown_names_the_key_and_choices(
    data: dict[str, object], key: str, choice: str
) -> None:
    error = config_error(data)
    assert error.key == key
    assert choice in error.choices
    assert key in str(error) and choice in str(error)


@pytest.mark.parametrize(
    ("data", "suggestion"),
    [
        ({**BASE, "events": ["MESSAGE_CRATE"]}, "did you mean 'MESSAGE_CREATE'?"),
        ({**BASE, "intents": ["GUILD_MEMBER"]}, "did you mean 'GUILD_MEMBERS'?"),
    ],
)
def test_parse_config_when_typo_then_problem_suggests_the_name(
    data: dict[str, object], suggestion: str
) -> None:
    assert suggestion in config_error(data).problem


def test_parse_config_when_intent_unknown_then_problem_names_only_that_intent() -> None:
    problem = config_error({**BASE, "intents": ["GUILDS", "BOGUS_INTENT"]}).problem
    assert problem == "unknown intent 'BOGUS_INTENT'"


def test_parse_config_when_name_is_nothing_like_a_choice_then_no_suggestion() -> None:
    assert "did you mean" not in config_error({**BASE, "events": ["BANANA"]}).problem


@pytest.mark.parametrize("spec", ["0-", "3-1", "a", "1,,2", "-1", "0-99999999"])
def test_parse_config_when_bad_shard_spec(spec: str) -> None:
    error = config_error({**BASE, "shards": {"ids": spec}})
    assert error.key == "shards.ids"


def test_parse_config_when_shard_id_beyond_count() -> None:
    error = config_error(BASE, {"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "0-4"})
    assert error.key == "shards.ids"
    assert "4" in error.problem


def test_parse_config_when_token_missing() -> None:
    error = config_error({"events": ["READY"]})
    assert error.key == "token"
    assert "DISCORD_TOKEN" in str(error)


def test_parse_config_when_bad_env_value_names_the_key() -> None:
    assert config_error(BASE, {"DISCORD_SHARD_COUNT": "many"}).key == "shards.count"
    assert config_error(BASE, {"AMQP_URL": "http://x"}).key == "amqp.url"
    assert config_error(BASE, {"LOG_LEVEL": "loud"}).key == "log.level"


def test_parse_config_when_intents_cannot_deliver_events_warns() -> None:
    config = parse_config({**BASE, "events": ["MESSAGE_CREATE", "GUILD_MEMBER_ADD"]}, {})
    text = " ".join(config.warnings)
    assert "GUILD_MEMBER_ADD" in text and "GUILD_MEMBERS" in text
    assert "MESSAGE_CREATE" in text and "GUILD_MESSAGES" in text
    assert "MESSAGE_CONTENT" in text


def test_parse_shard_ids_round_trips() -> None:
    assert parse_shard_ids("0-3,8") == (0, 1, 2, 3, 8)
    assert parse_shard_ids([5, 1]) == (1, 5)
    assert format_shard_ids((0, 1, 2, 3, 8, 10, 11)) == "0-3,8,10-11"


def test_redacted_hides_token_and_password() -> None:
    config = parse_config({**BASE, "amqp": {"url": "amqp://user:hunter2@rabbit:5672/"}}, {})
    text = json.dumps(config.redacted())
    assert 'tok"' not in text and "hunter2" not in text
    assert "[REDACTED]" in text
    assert "tok" not in repr(config)


def test_load_config_when_file_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("token = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.key == "--config"


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spectacles.gateway", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_cli_when_config_invalid_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('token = "abc"\nevents = ["READY"]\nintents = ["GUILDZ"]\n')
    result = run_cli("--config", str(path), env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "intents" in result.stderr and "GUILDZ" in result.stderr
    assert "GUILD_MESSAGES" in result.stderr  # the valid choices are listed


def test_cli_check_config_prints_effective_config_redacted(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('token = "file-token"\nevents = ["READY"]\n[shards]\nids = "0-1"\n')
    secret = "Njk.super-secret-token"
    result = run_cli(
        "--config", str(path), "check-config", env={"DISCORD_TOKEN": secret}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["token"] == "[REDACTED]"
    assert printed["shards"]["ids"] == "0-1"
    assert secret not in result.stdout + result.stderr


def test_cli_when_env_value_bad_prints_one_line_naming_variable_and_key(tmp_path: Path) -> None:
    env = {"DISCORD_TOKEN": "t", "DISCORD_EVENTS": "READY", "DISCORD_SHARD_COUNT": "abc"}
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "spectacles-gateway: configuration error: "
        "DISCORD_SHARD_COUNT (shards.count): expected an integer, got 'abc'\n"
    )
