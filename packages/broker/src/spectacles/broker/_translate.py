"""The one place that knows which transport, aiormq and aio-pika exceptions mean what.

Callers inside the package catch :data:`LINK_ERRORS` ("the connection or channel is gone") or
:data:`BROKER_FAILURES` (anything the AMQP layer can raise, broker errors included) and turn what
they caught into a :mod:`spectacles.broker.errors` type with :func:`translate`. Code outside the
package catches ``BROKER_FAILURES`` (exported by ``spectacles.broker``) and never names an aiormq
type.
"""

from __future__ import annotations

from typing import Final

import aiormq.exceptions
import pamqp.exceptions

from .errors import (
    BrokerError,
    BrokerUnavailable,
    ConnectionLost,
    PublishNacked,
    PublishReturned,
    TopologyMismatch,
)

__all__ = ["BROKER_FAILURES", "LINK_ERRORS", "describe", "translate"]

#: The connection (or channel) is gone or unreachable, as opposed to a refusal of what we asked
#: for. ``ssl.SSLError`` is an ``OSError``; ``TimeoutError`` is a connect or handshake timeout.
LINK_ERRORS: Final = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ConnectionClosed,
    ConnectionError,
    OSError,
    TimeoutError,
    pamqp.exceptions.PAMQPException,
)

#: "The broker link failed": everything an operation on RabbitMQ may raise that is about the
#: broker (its link, its refusals), never a bug of the caller.
BROKER_FAILURES: Final = (*LINK_ERRORS, aiormq.exceptions.AMQPError, BrokerError)


def describe(exc: BaseException | None) -> str:
    """``Type: message`` (or ``Type``), for logs; ``closed`` for a clean close.

    The AMQP libraries' own type names (``ProbableAuthenticationError``...) stay out of the
    text: their message (RabbitMQ's reply) says it, and they are not part of our API.
    """
    if exc is None:
        return "closed"
    text = str(exc)
    if text and type(exc).__module__.split(".")[0] in _LIBRARIES:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_LIBRARIES: Final = frozenset({"aiormq", "aio_pika", "pamqp"})


def translate(
    exc: BaseException,
    *,
    what: str | None = None,
    host: str | None = None,
    in_flight: bool = True,
    secrets: tuple[str, ...] = (),
) -> BrokerError:
    """The :mod:`spectacles.broker.errors` form of ``exc`` (a broker error is returned as is).

    ``what`` (e.g. "cannot declare exchange 'x'") starts the message. A link failure becomes
    ``ConnectionLost`` when an operation was ``in_flight`` (its outcome is unknown), else
    ``BrokerUnavailable``. ``secrets`` are scrubbed from the message.
    """
    if isinstance(exc, BrokerError):
        return exc
    detail = describe(exc)
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
    where = f" ({host})" if host else ""

    def text(default: str) -> str:
        return f"{what or default}{where}: {detail}"

    if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        return TopologyMismatch(text("RabbitMQ refused a declaration"))
    if isinstance(exc, aiormq.exceptions.PublishError):
        return PublishReturned(text("the publish was returned as unroutable"))
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return PublishNacked(text("RabbitMQ nacked the publish"))
    if isinstance(exc, LINK_ERRORS):
        if in_flight:
            return ConnectionLost(text("connection to RabbitMQ lost"), host=host)
        return BrokerUnavailable(text("cannot reach RabbitMQ"), host=host)
    return BrokerError(text("RabbitMQ refused the operation"))
