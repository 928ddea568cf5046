import json
import logging
import subprocess
import sys

import pytest

from spectacles.observability import (
    REDACTED,
    configure_logging,
    get_logger,
    redact,
    register_secret,
)

TOKEN = "MTA1NzQ2OTc5MjY0NzEyNzA0MA.GhXyZa.very-secret-token-value_123"


def _run(code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter so logging configuration does not leak between tests."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=True,
    )
    return result.stderr


def test_redact_when_secret_registered_then_replaced_everywhere() -> None:
    register_secret(TOKEN)
    assert redact(f"connecting with {TOKEN}!") == f"connecting with {REDACTED}!"
    assert TOKEN not in redact(f"Authorization: Bot {TOKEN}")


def test_redact_when_url_has_password_then_password_hidden() -> None:
    assert redact("amqp://admin:hunter22@rabbit:5672/") == f"amqp://admin:{REDACTED}@rabbit:5672/"


def test_json_logs_when_token_in_message_field_and_exception_then_never_printed() -> None:
    code = f"""
from spectacles.observability import configure_logging, get_logger, register_secret
import logging
configure_logging("INFO", "json", service="t")
register_secret({TOKEN!r})
log = get_logger("t", shard_id=3)
log.info("identify", token={TOKEN!r}, payload={{"d": {{"token": {TOKEN!r}}}}})
log.info("url " + {TOKEN!r})
try:
    raise RuntimeError("bad token " + {TOKEN!r})
except RuntimeError:
    log.exception("failed")
logging.getLogger("stdlib").warning("stdlib says %s", {TOKEN!r})
"""
    out = _run(code)
    assert TOKEN not in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 4
    assert lines[0]["event"] == "identify"
    assert lines[0]["shard_id"] == 3
    assert lines[0]["token"] == REDACTED
    assert lines[0]["service"] == "t"
    assert "RuntimeError" in lines[2]["exception"]
    assert lines[3]["event"] == f"stdlib says {REDACTED}"


def test_console_format_when_requested_then_not_json() -> None:
    out = _run(
        "from spectacles.observability import configure_logging, get_logger\n"
        "configure_logging(fmt='console', service='t')\n"
        "get_logger('x').warning('hello-console')\n"
    )
    assert "hello-console" in out
    assert not out.lstrip().startswith("{")


def test_level_from_environment_filters_lower_levels() -> None:
    out = _run(
        "from spectacles.observability import configure_logging, get_logger\n"
        "configure_logging(service='t')\n"
        "get_logger('x').info('hidden-info')\n"
        "get_logger('x').error('shown-error')\n",
        env={"LOG_LEVEL": "error", "LOG_FORMAT": "json"},
    )
    assert "hidden-info" not in out
    assert "shown-error" in out


def test_log_format_auto_is_accepted_like_the_gateway_config() -> None:
    # One LOG_FORMAT in .env serves every service: `auto` (gateway spelling) must work here too.
    out = _run(
        "from spectacles.observability import configure_logging, get_logger\n"
        "configure_logging(service='t')\n"
        "get_logger('x').warning('hello-auto')\n",
        env={"LOG_FORMAT": "auto"},
    )
    assert "hello-auto" in out


def test_configure_logging_when_bad_level_then_error_names_key() -> None:
    with pytest.raises(ValueError, match="LOG_LEVEL"):
        configure_logging("LOUD", "json")
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        configure_logging("INFO", "xml")
    logging.getLogger().handlers.clear()
    assert get_logger("x") is not None


def test_redact_when_one_secret_contains_another_then_the_longer_goes_whole() -> None:
    inner = "contained-secret-9f3"
    register_secret(inner)
    outer = f"Njk3.{inner}.tail-Zq81"
    register_secret(outer)
    register_secret(f"x{inner}")  # registered after `outer`, shorter: still replaced after it
    assert redact(f"token {outer} and {inner}") == f"token {REDACTED} and {REDACTED}"
