import pytest

from spectacles.rest import InvalidRequestGuard, InvalidRequestLimitReached, is_invalid_request


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("status", "scope", "counted"),
    [
        (401, None, True),
        (403, None, True),
        (429, "user", True),
        (429, "global", True),
        (429, None, True),
        (429, "shared", False),
        (404, None, False),
        (400, None, False),
        (200, None, False),
        (500, None, False),
    ],
)
def test_is_invalid_request_matches_discord_rules(
    status: int, scope: str | None, counted: bool
) -> None:
    assert is_invalid_request(status, scope) is counted


def test_guard_refuses_at_threshold_and_recovers_when_window_slides() -> None:
    clock = FakeClock()
    guard = InvalidRequestGuard(threshold=3, window=600.0, clock=clock)
    for _ in range(2):
        assert guard.record(401)
        clock.now += 10
    guard.check()  # 2 < 3: still allowed
    assert not guard.record(429, "shared")
    assert not guard.record(404)
    guard.check()
    guard.record(403)
    with pytest.raises(InvalidRequestLimitReached) as caught:
        guard.check()
    err = caught.value
    assert err.count == 3 and err.threshold == 3 and err.window == 600.0
    # The oldest answer (at t=1000) leaves the window at t=1600; now is t=1020.
    assert err.retry_after == pytest.approx(580.0)
    clock.now = 1600.5
    guard.check()
    assert guard.count == 2


def test_guard_rejects_nonsense_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        InvalidRequestGuard(threshold=0)
