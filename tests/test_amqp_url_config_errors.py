"""A bad AMQP_URL stops every service at start-up: exit 2, one line naming the setting, no secret.

The URL options are checked by ``spectacles.broker._url`` for every service; this runs each real
entry point (no RabbitMQ needed: the check comes before any connection).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SERVICES = {
    "gateway": ["-m", "spectacles.gateway"],
    "interactions": ["-m", "spectacles.interactions"],
    "rest-proxy": ["-m", "spectacles.rest.proxy"],
    "ping": ["-m", "spectacles.workers.ping"],
    "raid-guard": ["-m", "spectacles.workers.raid_guard"],
    "dead-letters": ["-m", "spectacles.broker.dead_letters_cli", "list", "ping"],
}

# Every kind of error is unit-tested in packages/broker/tests/test_broker_url.py; here, two per
# service prove that each entry point turns them into a config error.
BAD_URLS = {
    "unknown option": "amqp://bot:pw-secret-7@rabbit/,amqp://h2/?frame_max=4096",
    "missing cafile": "amqps://bot:pw-secret-7@rabbit/?heartbeat=5&cafile=/nonexistent/ca.pem",
}


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.parametrize("problem", sorted(BAD_URLS))
def test_bad_amqp_url_is_a_one_line_config_error(service: str, problem: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AMQP_URL": BAD_URLS[problem],
        "DISCORD_TOKEN": "not-a-real-token",
        "DISCORD_EVENTS": "READY",
        "DISCORD_PUBLIC_KEY": "0" * 64,
        "REST_PROXY_ALLOW_ANONYMOUS": "1",
    }
    result = subprocess.run(
        [sys.executable, *SERVICES[service]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert "AMQP_URL" in output, output
    assert "pw-secret-7" not in output
