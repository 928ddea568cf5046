"""``spectacles-rest-proxy`` as PID 1 (as in a container) honours SIGTERM even during start-up.

The kernel drops signals PID 1 has no handler for, so a SIGTERM that arrives before the handler is
installed is lost and ``docker stop`` waits for its SIGKILL. The test runs the real entry point
as PID 1 of a new PID namespace, sends SIGTERM as soon as the process catches it, and expects a
prompt exit 0 without the proxy ever starting to listen.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("unshare") is None,
    reason="needs Linux PID namespaces (unshare) to run a process as PID 1",
)


def _catches(pid: int, sig: signal.Signals) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def _namespaced_child(unshare_pid: int, deadline: float) -> int:
    """The host pid of the process ``unshare --fork`` started (PID 1 inside)."""
    while time.monotonic() < deadline:
        children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
        pids = children.read_text().split() if children.exists() else []
        if pids:
            return int(pids[0])
        time.sleep(0.001)
    pytest.fail("unshare never started the proxy")


def test_sigterm_during_start_up_stops_pid_1_at_once() -> None:
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a PID namespace here: {probe.stderr.decode().strip()}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "REST_PROXY_ADDRESS": f"127.0.0.1:{port}",
        "REST_PROXY_AUTH": "signal-test-secret",
        "LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            sys.executable,
            "-m",
            "spectacles.rest.proxy",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        child = _namespaced_child(process.pid, deadline)
        while not _catches(child, signal.SIGTERM):
            if time.monotonic() > deadline:
                pytest.fail("the proxy never installed a SIGTERM handler")
            time.sleep(0.001)
        sent = time.monotonic()
        os.kill(child, signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = (out + err).decode()
    assert process.returncode == 0, output
    assert "rest_proxy.started" not in output, "start-up went on after SIGTERM"
    assert took < 10, f"SIGTERM took {took:.1f}s to stop the proxy"
