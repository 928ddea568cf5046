"""Fixtures shared by every package's tests.

RabbitMQ is a real dependency of the test suite: when it does not answer, tests that need it
fail with instructions instead of being skipped, so a green run always means the broker code ran.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"


def _rabbit_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 5672), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The RabbitMQ under test; fails (never skips) the test when it does not answer."""
    url = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    if not _rabbit_answers(url):
        pytest.fail(
            f"RabbitMQ does not answer at {urlsplit(url).hostname}:{urlsplit(url).port or 5672} "
            "(AMQP_URL). Start one with `docker compose up -d rabbit` or "
            "`rabbitmq-server -detached`, or point AMQP_URL at a running broker.",
            pytrace=False,
        )
    return url


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses, for exchanges and queues the test must clean up."""
    base = request.node.name.replace("[", "-").replace("]", "")[:40]
    return f"t-{base}-{uuid.uuid4().hex[:8]}"
