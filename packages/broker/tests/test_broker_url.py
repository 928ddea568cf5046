"""Parsing AMQP URLs (``_url``): every option, every error, and what aiormq receives."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from yarl import URL

from spectacles.broker._endpoints import AmqpEndpoints
from spectacles.broker._url import OPTIONS, AmqpUrl, AmqpUrlError
from spectacles.broker.broker import Broker
from spectacles.broker.errors import BrokerUnavailable
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings

from .tls_kit import make_pki


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("url-pki")
    make_pki(directory)
    return directory


def test_defaults_match_aiormq() -> None:
    url = AmqpUrl.parse("amqp://rabbit")
    assert (url.host, url.port, url.username, url.password) == ("rabbit", 5672, "guest", "guest")
    assert url.virtual_host == "/" and url.auth == "plain" and not url.tls
    assert url.heartbeat is None and url.connection_timeout is None and url.name is None
    assert AmqpUrl.parse("amqps://rabbit").port == 5671
    assert AmqpUrl.parse("AMQP://rabbit:1234").port == 1234


@pytest.mark.parametrize(
    ("path", "vhost"),
    [
        ("", "/"),
        ("/", "/"),
        ("//", "/"),
        ("/%2F", "/"),
        ("/prod", "prod"),
        ("/a%2Fb", "a/b"),
        ("/a/b", "a/b"),
        ("/with%20space", "with space"),
        ("/%25percent", "%percent"),
    ],
)
def test_percent_encoded_vhosts(path: str, vhost: str) -> None:
    assert AmqpUrl.parse(f"amqp://h{path}").virtual_host == vhost


@pytest.mark.parametrize("vhost", ["/", "prod", "a/b", "with space", "%percent", "ü?#&"])
def test_aiormq_gets_the_same_vhost_credentials_and_host(vhost: str) -> None:
    # What aiormq does with the URL: yarl decodes the path except %2F, then it turns %2F into /.
    url = AmqpUrl(
        "amqp", "::1", 5672, "us:er@", "p@ss:w/rd?", vhost, heartbeat=5, redacted="amqp://x"
    )
    parsed = URL(url.aiormq_url())
    assert parsed.path[1:].replace("%2F", "/") == vhost
    assert (parsed.user, parsed.password, parsed.host, parsed.port) == (
        "us:er@",
        "p@ss:w/rd?",
        "::1",
        5672,
    )
    assert parsed.query["heartbeat"] == "5" and parsed.query["auth"] == "plain"
    assert AmqpUrl.parse(url.aiormq_url()).virtual_host == vhost  # and back


def test_ipv6_hosts() -> None:
    url = AmqpUrl.parse("amqp://u:p@[::1]:5673/")
    assert url.host == "::1" and url.port == 5673 and url.address == "[::1]:5673"
    assert AmqpUrl.parse("amqps://[fe80::1]/").address == "[fe80::1]:5671"
    assert BrokerSettings("amqp://[::1]/").host == "[::1]:5672"


def test_credentials_are_unescaped_and_never_shown() -> None:
    url = AmqpUrl.parse("amqp://bot:p%40ss%3Aword-secret@rabbit/")
    assert (url.username, url.password) == ("bot", "p@ss:word-secret")
    for text in (repr(url), str(url)):
        assert "word-secret" not in text and "p%40ss" not in text
    assert str(url) == "amqp://bot:***@rabbit/"
    assert url.sasl() == ("PLAIN", "\0bot\0p@ss:word-secret")


def test_every_option(pki_dir: Path) -> None:
    assert set(OPTIONS) == {
        "auth",
        "cafile",
        "capath",
        "certfile",
        "keyfile",
        "no_verify_ssl",
        "server_hostname",
        "heartbeat",
        "connection_timeout",
        "name",
    }
    ca, cert, key = pki_dir / "ca.pem", pki_dir / "external.pem", pki_dir / "external.key"
    url = AmqpUrl.parse(
        f"amqps://h/?auth=EXTERNAL&cafile={ca}&capath={pki_dir}&certfile={cert}&keyfile={key}"
        "&no_verify_ssl=yes&server_hostname=rabbit.internal&heartbeat=0"
        "&connection_timeout=2.5&name=my%20bot"
    )
    assert url.auth == "external" and url.sasl() == ("EXTERNAL", "")
    assert (url.cafile, url.capath, url.certfile, url.keyfile) == (
        str(ca),
        str(pki_dir),
        str(cert),
        str(key),
    )
    assert not url.verify and url.server_hostname == "rabbit.internal"
    assert url.heartbeat == 0 and url.connection_timeout == 2.5 and url.name == "my bot"
    context = url.ssl_context()
    assert context is not None and not context.check_hostname
    assert AmqpUrl.parse("amqp://h/").ssl_context() is None
    verified = AmqpUrl.parse(f"amqps://h/?cafile={ca}&no_verify_ssl=0").ssl_context()
    assert verified is not None and verified.check_hostname


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h/", "is not an AMQP URL"),
        ("amqp:///vhost", "is not an AMQP URL"),
        ("amqp://h:notaport/", "is not a valid URL"),
        ("amqp://h:70000/", "is not a valid URL"),
        ("amqp://h:0/", "port 0"),
        ("amqp://[::1/", "is not a valid URL"),
        ("amqp://h/?frame_max=4096", "unknown option 'frame_max'"),
        ("amqp://h/?heartbeat=5&heartbeat=6", "sets heartbeat twice"),
        ("amqp://h/?heartbeat", "malformed query"),
        ("amqp://h/?heartbeat=-1", "heartbeat='-1'"),
        ("amqp://h/?heartbeat=70000", "heartbeat='70000'"),
        ("amqp://h/?heartbeat=1.5", "heartbeat='1.5'"),
        ("amqp://h/?connection_timeout=0", "connection_timeout='0'"),
        ("amqp://h/?connection_timeout=soon", "connection_timeout='soon'"),
        ("amqp://h/?connection_timeout=inf", "connection_timeout='inf'"),
        ("amqp://h/?auth=cram-md5", "auth='cram-md5'"),
        ("amqp://h/?name=", "empty name"),
        ("amqps://h/?no_verify_ssl=maybe", "no_verify_ssl='maybe'"),
        ("amqps://h/?server_hostname=", "empty server_hostname"),
        ("amqp://h/?cafile=/etc/hosts", "only apply to amqps://"),
        ("amqp://h/?no_verify_ssl=1", "only apply to amqps://"),
        ("amqps://h/?cafile=/nonexistent/ca.pem", "not a readable file"),
        ("amqps://h/?capath=/nonexistent", "not a directory"),
        ("amqps://h/?certfile=/nonexistent/c.pem", "not a readable file"),
        ("amqps://h/?auth=external", "needs amqps:// and a client certificate"),
        ("amqp://h/?auth=external", "needs amqps:// and a client certificate"),
    ],
)
def test_every_error_names_the_setting_and_hides_the_password(url: str, problem: str) -> None:
    secret = url.replace("://", "://bot:hunter2-secret@", 1)
    with pytest.raises(AmqpUrlError) as caught:
        AmqpUrl.parse(secret, key="AMQP_URL")
    text = str(caught.value)
    assert text.startswith("AMQP_URL ") and problem in text, text
    assert "hunter2-secret" not in text
    assert caught.value.key == "AMQP_URL"


def test_tls_file_errors(pki_dir: Path, tmp_path: Path) -> None:
    key_only = f"amqps://h/?keyfile={pki_dir / 'client.key'}"
    with pytest.raises(AmqpUrlError, match="keyfile without certfile"):
        AmqpUrl.parse(key_only)
    not_pem = tmp_path / "garbage.pem"
    not_pem.write_text("garbage")
    for option in ("cafile", "certfile"):
        with pytest.raises(AmqpUrlError, match="cannot be loaded"):
            AmqpUrl.parse(f"amqps://h/?{option}={not_pem}")
    mismatched = f"amqps://h/?certfile={pki_dir / 'client.pem'}&keyfile={pki_dir / 'server.key'}"
    with pytest.raises(AmqpUrlError, match="cannot be loaded"):
        AmqpUrl.parse(mismatched)


def test_the_list_error_says_which_url(pki_dir: Path) -> None:
    with pytest.raises(AmqpUrlError, match=r"AMQP_URL \(URL 2 of 2\) .*unknown option 'x'"):
        BrokerSettings("amqp://h1/,amqp://h2/?x=1")
    with pytest.raises(AmqpUrlError, match=r"^amqp\.url "):
        AmqpEndpoints.parse("amqp://h/?heartbeat=x", key="amqp.url")


async def test_connection_timeout_in_the_url_wins_over_the_code_default() -> None:
    """A node that accepts TCP but never speaks AMQP: the URL's 0.3 s bounds the wait, not 30 s."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        settings = BrokerSettings(f"amqp://127.0.0.1:{port}/?connection_timeout=0.3", "t")
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=r"no answer within 0\.3s"):
            await Publisher.connect(settings, connect_timeout=30)
        assert time.monotonic() - started < 10  # margin for a loaded machine; 30 s without it
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(Broker.connect(settings, connect_timeout=30), 60)
        assert time.monotonic() - started < 10
    finally:
        silent.close()
