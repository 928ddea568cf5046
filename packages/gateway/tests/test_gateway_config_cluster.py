"""Gateway config for a RabbitMQ cluster: `amqp.urls`, comma-separated AMQP_URL, the order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spectacles.gateway import ConfigError, parse_config

BASE = {"token": "tok", "events": ["READY"], "intents": ["GUILDS"]}
NODES = ["amqp://u:pw-one-secret@rabbit:5672/%2F", "amqp://u:pw-one-secret@rabbit-2:5672/%2F"]


def test_amqp_urls_list_and_order() -> None:
    config = parse_config({**BASE, "amqp": {"urls": NODES, "url_order": "in-order"}}, {})
    assert config.amqp_url == ",".join(NODES)
    assert config.amqp_url_order == "in-order"
    shown = config.redacted()["amqp"]
    assert "pw-one-secret" not in str(shown)
    assert len(shown["urls"]) == 2 and shown["url_order"] == "in-order"


def test_single_url_still_works_and_defaults_to_shuffle() -> None:
    config = parse_config({**BASE, "amqp": {"url": NODES[0]}}, {})
    assert config.amqp_url == NODES[0]
    assert config.amqp_url_order == "shuffle"


def test_env_wins_over_the_file_list() -> None:
    env = {"AMQP_URL": "amqp://a:5672/, amqp://b:5672/", "AMQP_URL_ORDER": "IN-ORDER"}
    config = parse_config({**BASE, "amqp": {"urls": NODES}}, env)
    assert config.amqp_url == "amqp://a:5672/,amqp://b:5672/"
    assert config.amqp_url_order == "in-order"


@pytest.mark.parametrize(
    ("amqp", "key", "where"),
    [
        ({"urls": [NODES[0], "http://u:pw-one-secret@x/"]}, "amqp.urls", "URL 2 of 2"),
        ({"urls": [NODES[0], ""]}, "amqp.urls", "URL 2 of 2"),
        ({"urls": []}, "amqp.urls", "no URL"),
        ({"urls": "amqp://x/"}, "amqp.urls", "list"),
        ({"url": f"{NODES[0]},amqp://u:pw-one-secret@x:port/"}, "amqp.url", "URL 2 of 2"),
        ({"url": NODES[0], "url_order": "random"}, "amqp.url_order", "random"),
    ],
)
def test_bad_url_or_order_names_the_key_and_position(
    amqp: dict[str, object], key: str, where: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "amqp": amqp}, {})
    assert info.value.key == key
    assert where in str(info.value)
    assert "pw-one-secret" not in str(info.value)


def test_bad_url_in_env_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('token = "t"\nevents = ["READY"]\nintents = ["GUILDS"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "spectacles.gateway", "--config", str(config), "check-config"],
        env={"AMQP_URL": "amqp://u:pw-one-secret@a/,amqp//b", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "amqp.url" in result.stderr and "URL 2 of 2" in result.stderr
    assert "pw-one-secret" not in result.stderr
