"""Gateway test fixtures; the helpers live in gateway_testkit.py (importable from tests)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from gateway_testkit import group, http, publisher

__all__ = ["group", "http", "publisher"]
