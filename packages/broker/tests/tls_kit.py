"""A private CA and a throw-away RabbitMQ 4 with a TLS listener, for the ``amqps://`` tests.

The CA, the server certificate (for ``localhost`` and ``127.0.0.1``) and the client
certificates are made here with ``cryptography``; nothing is read from the machine. The broker
runs in a container named ``amqp-url-tls-*`` on free loopback ports, is configured through a
``conf.d`` file (``verify_peer`` without ``fail_if_no_peer_cert``, so a client may or may not
present a certificate; EXTERNAL through ``rabbitmq_auth_mechanism_ssl``, user = the certificate's
CN) and is removed when the tests end. Only a missing Docker skips these tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The user EXTERNAL logs in as: the CN of the client certificate made for it.
EXTERNAL_USER = "amqp-url-external"
#: A vhost whose name needs percent-encoding in a URL.
ODD_VHOST = "tls/odd vhost"

_SETUP = Path(__file__).parents[3] / ".." / "shared" / "docker-local" / "setup.sh"


@dataclass(frozen=True)
class Pki:
    """File paths of a private CA and of what it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    external_cert: Path
    external_key: Path
    other_ca: Path  # a CA that signed nothing the broker uses


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o644)  # the broker (another user in the container) reads it
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate, two client certificates and an unrelated CA, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    ca = _ca("amqp-url test CA")
    other = _ca("amqp-url unrelated CA")
    server = _leaf(ca, "localhost", server=True)
    client = _leaf(ca, "amqp-url-client", server=False)
    external = _leaf(ca, EXTERNAL_USER, server=False)
    return Pki(
        ca=_write_cert(ca[0], directory / "ca.pem"),
        server_cert=_write_cert(server[0], directory / "server.pem"),
        server_key=_write_key(server[1], directory / "server.key"),
        client_cert=_write_cert(client[0], directory / "client.pem"),
        client_key=_write_key(client[1], directory / "client.key"),
        external_cert=_write_cert(external[0], directory / "external.pem"),
        external_key=_write_key(external[1], directory / "external.key"),
        other_ca=_write_cert(other[0], directory / "other-ca.pem"),
    )


_CONF = """\
listeners.ssl.default = 5671
ssl_options.cacertfile = /etc/rabbitmq/tls/ca.pem
ssl_options.certfile = /etc/rabbitmq/tls/server.pem
ssl_options.keyfile = /etc/rabbitmq/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
"""


def image() -> str:
    """The RabbitMQ 4 image: ``RABBITMQ_IMAGE``, else the workplace's local stand-in."""
    return os.environ.get("RABBITMQ_IMAGE") or "local/rabbitmq:4.0"


def docker_missing() -> str | None:
    """Why Docker cannot run the broker here (None: it can).

    Where the engine is stopped or the image not built yet, the workplace's helper (as used by
    ``make test-rmq4`` and ``make e2e``) starts the engine and builds the image first.
    """
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    if not (_docker_answers() and _have_image()) and _SETUP.resolve().is_file():
        subprocess.run(["bash", str(_SETUP.resolve())], capture_output=True, timeout=1200)
    if not _docker_answers():
        return "the Docker engine does not answer ('docker info' failed)"
    return None


def _have_image() -> bool:
    result = subprocess.run(["docker", "image", "inspect", image()], capture_output=True)
    return result.returncode == 0


def _docker_answers() -> bool:
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TlsBroker:
    """A running RabbitMQ with TLS on ``tls_port`` and plain AMQP on ``port`` (127.0.0.1)."""

    name: str
    port: int
    tls_port: int
    pki: Pki

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl ARGS`` inside the container; its output."""
        result = subprocess.run(
            ["docker", "exec", self.name, "rabbitmqctl", "-q", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def connections(self) -> str:
        """``list_connections`` with name, user, vhost, TLS peer and heartbeat (one per line)."""
        return self.ctl(
            "list_connections", "client_properties", "user", "vhost", "ssl", "peer_cert_subject",
            "timeout",
        )  # fmt: skip

    def stop(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, timeout=60)


def start_broker(pki: Pki, workdir: Path) -> TlsBroker:
    """Start the container (removed by :meth:`TlsBroker.stop`) and wait until it accepts logins."""
    name = f"amqp-url-tls-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    broker = TlsBroker(name, _free_port(), _free_port(), pki)
    conf = workdir / "etc"
    (conf / "conf.d").mkdir(parents=True, exist_ok=True)
    (conf / "tls").mkdir(exist_ok=True)
    (conf / "conf.d" / "10-tls.conf").write_text(_CONF)
    (conf / "enabled_plugins").write_text(
        "[rabbitmq_management,rabbitmq_prometheus,rabbitmq_auth_mechanism_ssl].\n"
    )
    for source in (pki.ca, pki.server_cert, pki.server_key):
        shutil.copy(source, conf / "tls" / source.name)
    subprocess.run(
        [
            "docker", "create", "--name", name,
            "-p", f"127.0.0.1:{broker.port}:5672", "-p", f"127.0.0.1:{broker.tls_port}:5671",
            "-e", "RABBITMQ_DEFAULT_USER=guest", "-e", "RABBITMQ_DEFAULT_PASS=guest", image(),
        ],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    try:
        # The entrypoint hands /etc/rabbitmq to the rabbitmq user, so copied keys are readable.
        subprocess.run(
            ["docker", "cp", f"{conf}/.", f"{name}:/etc/rabbitmq/"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        subprocess.run(["docker", "start", name], capture_output=True, timeout=60, check=True)
        _await_startup(broker)
        broker.ctl("add_user", EXTERNAL_USER, uuid.uuid4().hex)  # EXTERNAL ignores the password
        broker.ctl("set_permissions", "-p", "/", EXTERNAL_USER, ".*", ".*", ".*")
        broker.ctl("add_vhost", ODD_VHOST)
        broker.ctl("set_permissions", "-p", ODD_VHOST, "guest", ".*", ".*", ".*")
    except BaseException:
        logs = subprocess.run(["docker", "logs", "--tail", "40", name], capture_output=True)
        broker.stop()
        raise RuntimeError(
            f"the TLS RabbitMQ did not start: {logs.stdout.decode()[-3000:]}"
            f"{logs.stderr.decode()[-3000:]}"
        ) from None
    return broker


def _await_startup(broker: TlsBroker) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["docker", "exec", broker.name, "rabbitmqctl", "-q", "await_startup", "--timeout", "5"],
            capture_output=True,
            timeout=60,
        )
        if result.returncode == 0:
            return
        time.sleep(1)
    raise TimeoutError("RabbitMQ did not finish starting within 180 s")
