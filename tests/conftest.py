"""Fixtures of the cross-package tests; the helpers live in stack_kit.py."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stack_kit import delete_group


@pytest.fixture
async def group(amqp_url: str, unique_name: str) -> AsyncIterator[str]:
    """A BROKER_GROUP of this test alone; every queue and exchange of it is deleted afterwards."""
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", unique_name)
    yield name
    await delete_group(amqp_url, name, workers=("ping", "raid-guard"))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session
