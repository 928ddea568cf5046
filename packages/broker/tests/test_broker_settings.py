"""Settings from the environment, and the package's public surface."""

from __future__ import annotations

import pytest

import spectacles.broker
from spectacles.broker.settings import BrokerSettings, redact_url


def test_defaults_when_environment_is_empty() -> None:
    settings = BrokerSettings.from_env({})
    assert settings.amqp_url == "amqp://guest:guest@localhost:5672/"
    assert settings.group == "gateway"
    assert settings.host == "localhost:5672"


def test_reads_amqp_url_and_broker_group() -> None:
    settings = BrokerSettings.from_env(
        {"AMQP_URL": "amqps://bot:pw@rabbit.internal/prod", "BROKER_GROUP": "bot-a"}
    )
    assert settings.amqp_url == "amqps://bot:pw@rabbit.internal/prod"
    assert settings.group == "bot-a"
    assert settings.host == "rabbit.internal:5671"


def test_password_never_shows_in_repr_or_errors() -> None:
    settings = BrokerSettings("amqp://bot:hunter2@rabbit:5672/")
    assert "hunter2" not in repr(settings)
    assert settings.safe_url == "amqp://bot:***@rabbit:5672/"
    assert redact_url("amqp://rabbit/") == "amqp://rabbit/"
    with pytest.raises(ValueError) as info:
        BrokerSettings("http://bot:hunter2@rabbit/")
    assert "AMQP_URL" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("group", ["", "has space", "a/b", "x" * 300])
def test_invalid_group_names_the_variable(group: str) -> None:
    with pytest.raises(ValueError, match="BROKER_GROUP"):
        BrokerSettings(group=group)


def test_public_api_is_complete() -> None:
    exported = set(spectacles.broker.__all__)
    for name in exported:
        assert hasattr(spectacles.broker, name), name
    for required in (
        "Broker",
        "BrokerSettings",
        "Topology",
        "Publisher",
        "Consumer",
        "Delivery",
        "GatewayCommands",
        "validate_command",
        "shard_for_guild",
        "RpcClient",
        "RpcServer",
        "BrokerError",
        "BrokerUnavailable",
        "ConnectionLost",
        "PublishError",
        "PublishNacked",
        "PublishReturned",
        "DeadLetter",
        "InvalidCommand",
        "RpcTimeout",
    ):
        assert required in exported, required
