import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from spectacles.observability import HealthServer, parse_address


def test_parse_address_forms() -> None:
    assert parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_address(":9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:81") == ("::1", 81)
    with pytest.raises(ValueError, match="host:port"):
        parse_address("localhost")
    with pytest.raises(ValueError, match="host:port"):
        parse_address("localhost:99999")


async def test_endpoints_report_health_readiness_and_metrics() -> None:
    registry = CollectorRegistry()
    counter = Counter("obs_test_events", "test counter", registry=registry)
    counter.inc(3)
    state = {"ready": False}

    def ready() -> tuple[bool, dict[str, object]]:
        return state["ready"], {"shards": {"0": "READY" if state["ready"] else "CONNECTING"}}

    async with HealthServer("127.0.0.1:0", ready=ready, registry=registry) as server:
        assert server.port != 0
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"{server.url}/readyz") as resp:
                assert resp.status == 503
                assert (await resp.json())["shards"] == {"0": "CONNECTING"}
            state["ready"] = True
            async with http.get(f"{server.url}/readyz") as resp:
                assert resp.status == 200
                assert (await resp.json())["ready"] is True
            async with http.get(f"{server.url}/metrics") as resp:
                assert resp.status == 200
                assert "obs_test_events_total 3.0" in await resp.text()


async def test_readyz_when_check_raises_then_503_with_reason() -> None:
    async def broken() -> tuple[bool, dict[str, object]]:
        raise RuntimeError("broker down")

    async with (
        HealthServer("127.0.0.1:0", ready=broken) as server,
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/readyz") as resp,
    ):
        assert resp.status == 503
        assert "broker down" in (await resp.json())["error"]
