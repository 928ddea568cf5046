"""Subprocesses the benchmarks start: logged to files, measured with psutil, always reaped.

Every process is started in its own session (process group) and registered, so `stop_all()`
(called from `finally` blocks and at interpreter exit) kills exactly the processes this run
started, also when a figure fails half-way.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

_LIVE: list[Proc] = []


class ProcError(RuntimeError):
    """A benchmark subprocess died or never became ready; carries its log tail."""

    def __init__(self, name: str, problem: str, log_tail: str) -> None:
        last = [line.strip() for line in log_tail.splitlines() if line.strip()][-2:]
        super().__init__(f"{name}: {problem}; log ends: {' | '.join(last)}")
        self.name = name
        self.problem = problem
        self.log_tail = log_tail


class Proc:
    """One subprocess with its log file, CPU and memory readings."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        stdin_pipe: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = self.log_path.open("wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        self.ps = psutil.Process(self.popen.pid)
        self._lines: list[str] = []
        self._cursor = 0  # lines before it were consumed by wait_line
        self._line_event = threading.Condition()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._peak_rss = 0
        self._sampling = False
        self._sampler: threading.Thread | None = None
        _LIVE.append(self)

    # -- stdout lines (subprocesses report readiness and results as JSON lines) ---------------

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self._log.write(b"[stdout] " + raw)
            self._log.flush()
            with self._line_event:
                self._lines.append(line)
                self._line_event.notify_all()
        with self._line_event:
            self._line_event.notify_all()

    def wait_line(self, prefix: str, timeout: float, *, watch: Proc | None = None) -> str:
        """The next unread stdout line starting with `prefix`.

        Raises when this process (or `watch`, the process feeding it) dies first, or on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._line_event:
            while True:
                for index in range(self._cursor, len(self._lines)):
                    line = self._lines[index]
                    if line.startswith(prefix):
                        self._cursor = index + 1
                        return line[len(prefix) :].strip()
                if self.popen.poll() is not None and not self._reader.is_alive():
                    raise ProcError(self.name, f"exited ({self.popen.returncode})", self.tail())
                if watch is not None:
                    watch.check_alive()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProcError(self.name, f"no {prefix!r} line in {timeout:.0f}s", self.tail())
                self._line_event.wait(min(left, 0.5))

    def send(self, line: str) -> None:
        """Write one command line to the process's stdin."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def tail(self, lines: int = 20) -> str:
        """The last lines of the log file."""
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- measurements ---------------------------------------------------------------------------

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process and its children so far."""
        total = 0.0
        for p in self._tree():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children now."""
        total = 0
        for p in self._tree():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def start_rss_sampling(self, interval: float = 0.05) -> None:
        """Track the peak RSS in a background thread until `stop_rss_sampling()`."""
        self._peak_rss = self.rss_bytes()
        self._sampling = True

        def sample() -> None:
            while self._sampling:
                self._peak_rss = max(self._peak_rss, self.rss_bytes())
                time.sleep(interval)

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def stop_rss_sampling(self) -> int:
        """The peak RSS seen since `start_rss_sampling()`."""
        self._sampling = False
        if self._sampler is not None:
            self._sampler.join(timeout=2)
        return self._peak_rss

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise with the log tail when the process died."""
        if not self.alive():
            raise ProcError(self.name, f"exited ({self.popen.returncode})", self.tail())

    def wait_exit(self, timeout: float) -> int:
        """Wait for a process that ends on its own; kill it (and raise) after `timeout`."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            tail = self.tail()
            self.stop()
            raise ProcError(self.name, f"still running after {timeout:.0f}s", tail) from None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        else:
            # The leader is gone; make sure nothing it started lingers in its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        self._sampling = False
        self._reader.join(timeout=2)
        with contextlib.suppress(Exception):
            self._log.close()
        if self in _LIVE:
            _LIVE.remove(self)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def stop_all() -> None:
    """Stop every process this run started and has not stopped yet."""
    for proc in list(reversed(_LIVE)):
        with contextlib.suppress(Exception):
            proc.stop(grace=3.0)


atexit.register(stop_all)
