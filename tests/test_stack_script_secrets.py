"""`make up` (scripts/stack.sh up) never runs against real Discord with a development secret.

Runs the real script on a copy of the repository's files, with a `docker` that does not answer,
so it stops right after the secrets step: nothing is started.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
KEYS = (
    "RABBITMQ_PASSWORD",
    "RABBITMQ_GATEWAY_PASSWORD",
    "RABBITMQ_WORKER_PASSWORD",
    "RABBITMQ_INTERACTIONS_PASSWORD",
    "REST_PROXY_AUTH",
)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "stack.sh", tmp_path / "scripts" / "stack.sh")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    docker = fake_bin / "docker"
    docker.write_text("#!/bin/sh\nexit 1\n")  # 'docker info' fails: the script stops there
    docker.chmod(0o755)
    return tmp_path


def up(checkout: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RABBITMQ_", "REST_PROXY_", "DISCORD_", "COMPOSE"))
    }
    env.update(
        DISCORD_TOKEN="a-real-looking-token",
        COMPOSE="true",
        PATH=f"{checkout / 'bin'}:{env['PATH']}",
    )
    return subprocess.run(
        ["bash", "scripts/stack.sh", "up"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def env_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def test_first_up_generates_strong_secrets_into_env_and_keeps_them(checkout: Path) -> None:
    result = up(checkout)
    assert "Docker engine does not answer" in result.stderr, result.stderr
    values = env_values(checkout / ".env")
    for key in KEYS:
        assert re.fullmatch(r"[0-9a-f]{48}", values[key]), key
    assert len({values[k] for k in KEYS}) == len(KEYS)
    assert oct((checkout / ".env").stat().st_mode & 0o777) == "0o600"
    up(checkout)
    assert env_values(checkout / ".env") == values  # generated once, then kept


def test_up_refuses_a_development_password(checkout: Path) -> None:
    (checkout / ".env").write_text("RABBITMQ_PASSWORD=dev-password\n")
    result = up(checkout)
    assert result.returncode != 0
    assert "RABBITMQ_PASSWORD is the development default" in result.stderr
    assert "Docker engine" not in result.stderr  # refused before anything else
