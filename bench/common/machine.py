"""What the results file says about the machine the numbers came from."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from typing import Any

from .rabbit import version as rabbit_version


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _node() -> str:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    return "not installed"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "rabbitmq": rabbit_version(),
        "node": _node(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "libraries": {
            d: _version(d) for d in ("aio-pika", "aiormq", "pamqp", "uvloop", "msgspec", "aiohttp")
        },
    }
