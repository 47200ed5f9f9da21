"""The Celery broker over TLS verifies the server, as the ledger's client does.

A real redis-server serves TLS with a certificate signed by a CA made here. The broker
connection must refuse it unless that CA is trusted (``ssl_ca_certs`` on the URL), and
must carry a message when it is.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kombu.exceptions import OperationalError

from config.settings import load_settings
from sandbox.redis_server import _free_port, redis_executable
from tasks.celery import celery_config, make_app

PASSWORD = "broker-auth-token"


def _tls_supported() -> str | None:
    try:
        out = subprocess.run(
            [redis_executable(), "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        return f"no runnable redis-server: {exc}"
    return None if "redis" in out.lower() else f"unexpected redis-server: {out}"


@dataclass
class Pki:
    directory: Path

    def ca(self, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            self._builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.write(f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    def server(self, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        cert = (
            self._builder(subject, ca_cert.subject, key.public_key())
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.write("server.pem", cert.public_bytes(serialization.Encoding.PEM))
        self.write(
            "server.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    def write(self, name: str, data: bytes) -> None:
        (self.directory / name).write_bytes(data)

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
        )


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server on TLS only (its cert signed by ``trusted.pem``), with a password."""
    reason = _tls_supported()
    if reason:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("tls")
    pki = Pki(directory)
    pki.server(*pki.ca("trusted"))
    pki.ca("stranger")
    port = _free_port()
    args = [redis_executable(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    args += ["--tls-cert-file", str(directory / "server.pem")]
    args += ["--tls-key-file", str(directory / "server.key")]
    args += ["--tls-ca-cert-file", str(directory / "trusted.pem"), "--tls-auth-clients", "no"]
    args += ["--requirepass", PASSWORD, "--save", "", "--dir", str(directory)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for_tls(port, directory / "trusted.pem", proc)
        yield port, directory
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_tls(port: int, ca: Path, proc: subprocess.Popen[bytes]) -> None:
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        password=PASSWORD,
        ssl=True,
        ssl_ca_certs=str(ca),
        socket_timeout=1,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            client.close()
            return
        except redis.ConnectionError:
            if proc.poll() is not None:
                output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                if "TLS" in output and "not" in output.lower() and "support" in output.lower():
                    pytest.skip(f"this redis-server was built without TLS: {output[-300:]}")
                raise RuntimeError(f"TLS redis-server exited: {output[-500:]}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _broker_url(port: int, query: str = "") -> str:
    return f"rediss://:{PASSWORD}@127.0.0.1:{port}/0{query}"


def _round_trip(url: str) -> object:
    """Publish one message through the Celery app's broker connection and consume it."""
    settings = load_settings(redis_url=url, redis_key_prefix="bwp-tls-test:")
    app = make_app(settings)
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        queue = conn.SimpleQueue("bwp-tls-probe")
        try:
            queue.put({"hello": "tls"})
            return queue.get(timeout=5).payload
        finally:
            queue.close()


def test_a_rediss_broker_verifies_the_server_certificate() -> None:
    # Given a rediss:// broker URL
    config = celery_config(load_settings(redis_url="rediss://cache.example:6380/0"))
    # Then the broker connection requires a valid certificate (kombu's default is none)
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert celery_config(load_settings())["broker_use_ssl"] is None


def test_a_broker_whose_certificate_no_trusted_ca_signed_is_refused(
    tls_redis: tuple[int, Path],
) -> None:
    port, directory = tls_redis
    # Given a server whose certificate is signed by a CA this worker does not trust
    # (neither the system's store nor the bundle the URL names)
    # When the worker connects its broker
    # Then the TLS handshake fails before the password is ever sent
    for query in ("", f"?ssl_ca_certs={directory / 'stranger.pem'}"):
        with pytest.raises((OperationalError, redis.ConnectionError), match=r"(?i)certificate"):
            _round_trip(_broker_url(port, query))


def test_a_broker_signed_by_the_trusted_ca_carries_a_message(tls_redis: tuple[int, Path]) -> None:
    port, directory = tls_redis
    # Given the CA that signed the server's certificate, named on the URL
    url = _broker_url(port, f"?ssl_ca_certs={directory / 'trusted.pem'}")
    # When a message is published and consumed through the Celery app's connection
    # Then it arrives
    assert _round_trip(url) == {"hello": "tls"}
