"""The one backoff policy (``_backoff``) and the one error table (``_translate``)."""

from __future__ import annotations

import random
import ssl

import aiormq.exceptions
import pytest
from aiormq.abc import DeliveredMessage
from pamqp import commands
from pamqp.header import ContentHeader

from spectacles.broker import BROKER_FAILURES
from spectacles.broker._backoff import Backoff
from spectacles.broker._translate import LINK_ERRORS, translate
from spectacles.broker.errors import (
    BrokerError,
    BrokerUnavailable,
    ConnectionLost,
    PublishNacked,
    PublishReturned,
    TopologyMismatch,
)


def test_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 4.0, jitter="none")
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.next_delay() == 0.5
    assert Backoff(1.0, 60.0).ceiling(10_000) == 60.0  # no overflow after a long outage


@pytest.mark.parametrize("jitter", ["equal", "full", "decorrelated"])
def test_jitter_stays_within_its_bounds_and_spreads(jitter: str) -> None:
    backoff = Backoff(0.5, 8.0, jitter=jitter, rng=random.Random(7))  # type: ignore[arg-type]
    delays = []
    for attempt in range(40):
        delay = backoff.next_delay()
        delays.append(delay)
        ceiling = min(8.0, 0.5 * 2**attempt)
        if jitter == "equal":
            assert ceiling / 2 <= delay <= ceiling  # a floor: a lasting failure is no hot loop
        elif jitter == "full":
            assert 0 <= delay <= ceiling
        else:
            assert 0.5 <= delay <= 8.0
    assert len(set(delays[-20:])) > 15  # replicas do not retry in lockstep


def test_bad_parameters_are_refused() -> None:
    for args in ((0.0, 1.0), (2.0, 1.0)):
        with pytest.raises(ValueError, match="base"):
            Backoff(*args)
    with pytest.raises(ValueError, match="factor"):
        Backoff(1.0, 2.0, factor=0.5)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(1.0, 2.0, jitter="sometimes")  # type: ignore[arg-type]


async def test_sleep_waits_the_delay() -> None:
    backoff = Backoff(0.01, 0.02, jitter="none")
    assert await backoff.sleep() == 0.01
    assert await backoff.sleep() == 0.02


def test_translate_maps_each_kind_once() -> None:
    host = "rabbit:5672"
    lost = translate(aiormq.exceptions.ConnectionClosed(320, "shutdown"), host=host)
    assert isinstance(lost, ConnectionLost) and lost.host == host and "320" in str(lost)
    assert "ConnectionClosed" not in str(lost)  # no aiormq name leaks, even as text
    unreachable = translate(ConnectionRefusedError("refused"), host=host, in_flight=False)
    assert type(unreachable) is BrokerUnavailable
    cert = ssl.SSLCertVerificationError("CERTIFICATE_VERIFY_FAILED")
    assert isinstance(translate(cert, in_flight=False), BrokerUnavailable)
    mismatch = aiormq.exceptions.ChannelPreconditionFailed("PRECONDITION_FAILED - x-queue-type")
    assert isinstance(translate(mismatch), TopologyMismatch)
    nack = aiormq.exceptions.DeliveryError(None, commands.Basic.Nack())
    assert isinstance(translate(nack), PublishNacked)
    unroutable = commands.Basic.Return(reply_code=312, reply_text="NO_ROUTE")
    message = DeliveredMessage(unroutable, ContentHeader(), b"", None)  # type: ignore[arg-type]
    returned = aiormq.exceptions.PublishError(message, unroutable)
    assert isinstance(translate(returned), PublishReturned)
    refused = aiormq.exceptions.ChannelAccessRefused("ACCESS_REFUSED pw-secret")
    other = translate(refused, secrets=("pw-secret",))
    assert type(other) is BrokerError and "pw-secret" not in str(other)
    same = BrokerUnavailable("x")
    assert translate(same) is same


def test_one_tuple_for_a_failed_broker_link() -> None:
    for exc in (
        aiormq.exceptions.AMQPConnectionError(),
        aiormq.exceptions.ChannelInvalidStateError(),
        aiormq.exceptions.ChannelNotFoundEntity(),
        ConnectionResetError(),
        TimeoutError(),
        BrokerUnavailable("down"),
    ):
        assert isinstance(exc, BROKER_FAILURES)
    assert not isinstance(aiormq.exceptions.ChannelNotFoundEntity(), LINK_ERRORS)
    assert not isinstance(ValueError("a bug"), BROKER_FAILURES)
