"""RabbitMQ's own CPU time (when it runs on this machine), to show where the seconds go."""

from __future__ import annotations

import contextlib
import subprocess
from urllib.parse import urlsplit

import psutil


class RabbitProcess:
    """The broker process listening on the AMQP URL's port, if it is local."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process

    @classmethod
    def find(cls, amqp_url: str) -> RabbitProcess | None:
        port = urlsplit(amqp_url).port or 5672
        with contextlib.suppress(psutil.Error, OSError):
            for conn in psutil.net_connections("tcp"):
                if conn.status == "LISTEN" and conn.laddr and conn.laddr.port == port and conn.pid:
                    return cls(psutil.Process(conn.pid))
        return None

    def cpu_seconds(self) -> float:
        with contextlib.suppress(psutil.Error):
            t = self.process.cpu_times()
            return float(t.user + t.system)
        return float("nan")


def version() -> str:
    """`rabbitmqctl version`, or 'unknown'."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        out = subprocess.run(
            ["rabbitmqctl", "version"], capture_output=True, text=True, timeout=60, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[-1]
    return "unknown"
