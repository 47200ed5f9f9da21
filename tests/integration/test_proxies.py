"""HTTPS_PROXY, HTTP_PROXY and NO_PROXY route every HTTP client through a real proxy.

The worker's client brings its own transport (a pool per thread), which turns off httpx's
own reading of the proxy variables; config/proxies.py makes the routes instead. The
targets live under ``.invalid``: no resolver knows them, so a request that reaches one
went through the proxy (sandbox/proxy.py, on loopback, maps them to loopback ports).
"""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.clients import make_http
from config.settings import Settings, load_settings
from sandbox.proxy import ForwardProxy

API_HOST = "bwp-api.invalid"
OMS_HOST = "oms.invalid"


class _Origin(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = f"origin {self.headers['Host']} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


def _serve(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def plain_origin() -> Iterator[int]:
    """An http:// origin on loopback; its port."""
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin))


def _certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for API_HOST: (ca, cert, key) files."""
    now = dt.datetime.now(dt.UTC)

    def builder(
        subject: str, issuer: str, public: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("proxy-test-ca", "proxy-test-ca", ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        builder(API_HOST, "proxy-test-ca", key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(API_HOST)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An https:// origin on loopback serving API_HOST's certificate: (port, CA file)."""
    ca, cert, key = _certificate(tmp_path_factory.mktemp("proxy-tls"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for port in _serve(server):
        yield port, ca


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def settings(**values: str) -> Settings:
    return load_settings(allow_insecure_http=True, **values)


@pytest.mark.parametrize("probe_timeout", [None, 5.0], ids=["worker", "check"])
def test_https_goes_through_the_proxy_with_the_certificate_verified_end_to_end(
    tls_origin: tuple[int, Path], monkeypatch: pytest.MonkeyPatch, probe_timeout: float | None
) -> None:
    # Given HTTPS_PROXY, and a target only the proxy can reach, whose CA the client trusts
    port, ca = tls_origin
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with ForwardProxy({API_HOST: port}) as proxy:
        client = make_http(settings(https_proxy=proxy.url), probe_timeout=probe_timeout)
        # When four threads call it (each has its own pool in the worker's client)
        with client, ThreadPoolExecutor(4) as pool:
            url = f"https://{API_HOST}:{port}/graphql"
            answers = list(pool.map(lambda _: client.get(url), range(4)))
    # Then every call arrived, tunnelled by CONNECT, TLS verified against API_HOST
    assert [a.status_code for a in answers] == [200] * 4
    assert answers[0].text == f"origin {API_HOST}:{port} /graphql"
    assert proxy.requests
    assert set(proxy.requests) == {("CONNECT", API_HOST)}


def test_http_goes_through_http_proxy(plain_origin: int) -> None:
    with (
        ForwardProxy({OMS_HOST: plain_origin}) as proxy,
        make_http(settings(http_proxy=proxy.url)) as client,
    ):
        answer = client.post(f"http://{OMS_HOST}:{plain_origin}/deliveries", content=b"{}")
    # the origin only answers GET: the request arrived (501 from the origin, not the proxy)
    assert answer.status_code == 501
    assert proxy.requests == [("POST", OMS_HOST)]


def test_no_proxy_hosts_are_reached_directly(tls_origin: tuple[int, Path]) -> None:
    port, _ = tls_origin
    with ForwardProxy({API_HOST: port}) as proxy:
        chosen = settings(https_proxy=proxy.url, no_proxy=f"example.com, {API_HOST}")
        with make_http(chosen) as client, pytest.raises(httpx.ConnectError):
            # direct: nothing resolves a name under .invalid
            client.get(f"https://{API_HOST}:{port}/graphql")
    assert proxy.requests == []


def test_no_proxy_star_turns_every_proxy_off(plain_origin: int) -> None:
    with (
        ForwardProxy({OMS_HOST: plain_origin}) as proxy,
        make_http(settings(http_proxy=proxy.url, no_proxy="*")) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(f"http://{OMS_HOST}:{plain_origin}/")
    assert proxy.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_is_always_reached_directly(plain_origin: int, host: str) -> None:
    with (
        ForwardProxy({}) as proxy,
        make_http(settings(http_proxy=proxy.url, https_proxy=proxy.url)) as client,
    ):
        answer = client.get(f"http://{host}:{plain_origin}/healthz")
    assert answer.status_code == 200
    assert proxy.requests == []


def test_without_a_proxy_nothing_goes_through_one(plain_origin: int) -> None:
    with make_http(settings()) as client, pytest.raises(httpx.ConnectError):
        client.get(f"http://{OMS_HOST}:{plain_origin}/")
