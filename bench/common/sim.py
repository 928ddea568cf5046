"""The simulator as a subprocess, and the few control-API calls the benchmarks make."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .procs import Proc

HERE = Path(__file__).resolve().parent


class SimProc:
    """A running simulator process and its URLs."""

    def __init__(
        self,
        log_dir: Path,
        *,
        name: str = "simulator",
        shards: int = 1,
        guilds: int = 2,
        max_concurrency: int = 1,
        identify_interval: float = 5.0,
        token: str = "sim-token",
    ) -> None:
        argv = [
            sys.executable,
            str(HERE / "simserver.py"),
            "--shards",
            str(shards),
            "--guilds",
            str(guilds),
            "--max-concurrency",
            str(max_concurrency),
            "--identify-interval",
            str(identify_interval),
            "--token",
            token,
        ]
        self.token = token
        self.proc = Proc(name, argv, log_dir)
        info = json.loads(self.proc.wait_line("READY", timeout=60))
        self.base_url: str = info["base_url"]
        self.api_url: str = info["api_url"]
        self.gateway_url: str = info["gateway_url"]

    def stop(self) -> None:
        self.proc.stop()

    # -- control API ------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + "/_sim" + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"simulator {method} {path} -> {exc.code}: {exc.read()[:300]!r}"
            ) from None

    def sessions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/sessions")
        return result

    def live_shards(self) -> set[int]:
        """Shard ids with a connected session."""
        live = set()
        for s in self.sessions():
            connected = s.get("connected", s.get("live", True))
            if connected:
                live.add(int(s["shard"][0]))
        return live

    def wait_shards(self, count: int, timeout: float, *, watch: Proc | None = None) -> float:
        """Wait until `count` shards have live sessions; seconds it took."""
        started = time.monotonic()
        while True:
            live = self.live_shards()
            if len(live) >= count:
                return time.monotonic() - started
            if watch is not None:
                watch.check_alive()
            if time.monotonic() - started > timeout:
                raise TimeoutError(
                    f"only {len(live)}/{count} shards connected after {timeout:.0f}s"
                )
            time.sleep(0.2)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def flood(
        self,
        count: int,
        *,
        rate: float | None = None,
        shard: int | None = None,
        wait: bool = True,
        timeout: float = 600.0,
    ) -> dict[str, Any]:
        """POST /_sim/flood; with `wait` the answer carries sessions, sent, seconds, rate."""
        body: dict[str, Any] = {"event": "MESSAGE_CREATE", "count": count, "wait": wait}
        if rate is not None:
            body["rate"] = rate
        if shard is not None:
            body["shard"] = shard
        result: dict[str, Any] = self._call("POST", "/flood", body, timeout=timeout)
        return result
