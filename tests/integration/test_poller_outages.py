"""The poller under pressure: backpressure from a deep Celery queue, a Redis outage that
it waits out without touching messages, and Redis over TLS with verification on."""

from __future__ import annotations

import datetime
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from config.clients import make_redis
from sandbox.redis_server import EmbeddedRedis
from tasks.errors import LedgerUnavailable
from tasks.events.samples import to_body
from tasks.keys import Keys
from tasks.ledger.events import ClaimRequest, Ledger
from tests.integration.test_poller import Rig, delivered, make_rig
from worker.poller.metrics import heartbeat_fresh


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


class Running:
    """The poller's loop on a thread, stopped at the end of the block."""

    def __init__(self, rig: Rig) -> None:
        self.rig, self.stop = rig, threading.Event()
        self.thread = threading.Thread(target=rig.poller.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_a_deep_celery_queue_pauses_intake_until_it_drains(
    sqs, queues, redis_url, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    # Given a Celery queue deeper than the mark
    rig = make_rig(sqs, queues, redis_url, key_prefix, probes=True, max_queue_depth=3)
    backlog_key = f"{key_prefix}celery:{rig.settings.celery_queue}"
    rig.redis.lpush(backlog_key, *[b"backlog"] * 5)
    rig.send(to_body(delivered()))
    with Running(rig):
        # Then the poller does not receive while the queue is deep
        wait_for(lambda: rig.poller.metrics.paused._value.get() >= 2)
        assert rig.poller.totals.polls == 0
        assert rig.counts(rig.queue_url) == (1, 0)
        # When the workers drain it, intake resumes and the event is dispatched
        rig.redis.delete(backlog_key)
        wait_for(lambda: rig.poller.totals.dispatched == 1)
    rig.redis.close()


def test_a_redis_outage_pauses_intake_and_the_poller_recovers_by_itself(
    sqs, queues, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    with EmbeddedRedis() as server:
        rig = make_rig(sqs, queues, server.url, key_prefix, probes=True)
        server.stop()
        for order in ("322-OUT-1", "322-OUT-2"):
            rig.send(to_body(delivered(order=order)))
        with Running(rig):
            # While Redis is down: nothing dispatched, messages stay in SQS, the loop lives
            wait_for(lambda: rig.poller.metrics.errors.labels("redis")._value.get() >= 1)
            polls_during_outage = rig.poller.totals.polls
            time.sleep(1.5)  # the outage lasts a while: the poller must not keep receiving
            assert rig.poller.totals.polls == polls_during_outage
            assert rig.poller.totals.dispatched == 0
            # ... and what it had received was handed back at once
            assert rig.counts(rig.queue_url) == (2, 0)
            # When Redis is back, the poller resumes by itself
            server.start()
            wait_for(lambda: rig.poller.totals.dispatched == 2, timeout=30)
            # held in flight until their tasks are done
            assert rig.counts(rig.queue_url) == (0, 2)
            assert rig.work() == 2
            wait_for(lambda: rig.counts(rig.queue_url) == (0, 0))
        rig.redis.close()


def test_a_deliberate_pause_stays_healthy(sqs, queues, key_prefix) -> None:  # type: ignore[no-untyped-def]
    # Given a poller that paused intake because Redis is down (messages wait in SQS)
    with EmbeddedRedis() as server:
        rig = make_rig(sqs, queues, server.url, key_prefix, probes=True)
        server.stop()
        rig.send(to_body(delivered(order="322-PAUSE-1")))
        with Running(rig):
            wait_for(lambda: rig.poller.metrics.errors.labels("redis")._value.get() >= 1)
            polls = rig.poller.totals.polls
            # When the pause lasts longer than /healthz's window (1 s here)
            for _ in range(6):
                time.sleep(0.5)
                # Then /healthz's check says healthy all along: the loop is alive
                assert heartbeat_fresh(rig.poller.metrics, max_age=1.0)
            # ... though it did not receive (nothing cycles towards the redrive policy)
            assert rig.poller.totals.polls == polls
        rig.redis.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert_path


@pytest.fixture
def tls_redis() -> Iterator[tuple[int, Path, Path]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no system redis-server (with TLS) on this machine")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cert, key, ca = _certificates(directory, "server")
        other_ca, _, _ = _certificates(directory, "stranger")
        port = _free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--tls-port",
                str(port),
                "--tls-cert-file",
                str(cert),
                "--tls-key-file",
                str(key),
                "--tls-ca-cert-file",
                str(ca),
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=10)
            yield port, ca, other_ca
        finally:
            proc.terminate()
            proc.wait(10)


def test_rediss_urls_work_and_verify_the_server(tls_redis: tuple[int, Path, Path]) -> None:
    port, ca, other_ca = tls_redis
    request = [ClaimRequest("evt-tls", "h")]
    good = make_redis(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}")
    ledger = Ledger(good, Keys("bwp-tls:"), claim_ttl=30, queued_ttl=60, done_ttl=60)
    assert [c.value for c in ledger.claim(request)] == ["new"]
    good.close()
    # A server whose certificate the client cannot verify is refused
    wrong = make_redis(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={other_ca}")
    with pytest.raises(LedgerUnavailable):
        Ledger(wrong, Keys("bwp-tls:"), claim_ttl=30, queued_ttl=60, done_ttl=60).claim(request)
    wrong.close()


def test_an_unexpected_receive_error_does_not_end_the_loop(
    sqs, queues, redis_url, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    # Given a receive path that raises something no AWS error class covers, once
    failures = []

    def broken_once(**_: object) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("a bug in a receive hook")

    sqs.meta.events.register("before-call.sqs.ReceiveMessage", broken_once)
    rig = make_rig(sqs, queues, redis_url, key_prefix)
    rig.send(to_body(delivered(order="322-RECV-1")))
    with structlog.testing.capture_logs() as logs, Running(rig) as running:
        # Then the loop logs it once, lives on, and dispatches the event
        wait_for(lambda: rig.poller.totals.dispatched == 1)
        assert running.thread.is_alive()
    assert [e["event"] for e in logs if e["event"] == "receive_loop_error"] == [
        "receive_loop_error"
    ]
    assert not rig.poller.failed
    sqs.meta.events.unregister("before-call.sqs.ReceiveMessage", broken_once)
    rig.redis.close()


def test_a_settling_tick_refused_by_the_redis_acl_is_logged_once_and_the_loop_lives_on(
    sqs, queues, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    # Given a poller on a Redis of its own whose user may run everything, holding a message
    with EmbeddedRedis() as server:
        admin = make_redis(server.url)
        admin.execute_command("ACL", "SETUSER", "bwp-poller", "on", ">acl-pw", "~*", "&*", "+@all")
        where = server.url.split("//", 1)[1]
        rig = make_rig(sqs, queues, f"redis://bwp-poller:acl-pw@{where}", key_prefix)
        rig.send(to_body(delivered(order="322-ACL-1")))
        with structlog.testing.capture_logs() as logs, Running(rig) as running:
            wait_for(lambda: rig.poller.totals.dispatched == 1 and rig.poller.totals.held == 1)
            # When an ACL change refuses it the scripts the settling tick runs
            admin.execute_command("ACL", "SETUSER", "bwp-poller", "-@scripting")
            wait_for(lambda: rig.poller.metrics.errors.labels("settle")._value.get() >= 3)
            # Then the loop lives on, healthy, and still holds the message
            assert running.thread.is_alive()
            assert heartbeat_fresh(rig.poller.metrics, max_age=1.0)
            assert rig.poller.totals.held == 1
            # When the ACL is put right and the event's task is done, it settles
            admin.execute_command("ACL", "SETUSER", "bwp-poller", "+@all")
            assert rig.work() == 1
            wait_for(lambda: rig.counts(rig.queue_url) == (0, 0))
        failures = [e for e in logs if e["event"] == "settle_tick_failed"]
        # told once (one structured line, no traceback), however many ticks failed
        assert len(failures) == 1, failures
        assert failures[0]["error"] == "NoPermissionError"
        assert failures[0]["log_level"] == "error"
        assert not failures[0]["exc_info"]
        assert not rig.poller.failed
        rig.redis.close()
        admin.close()


def test_a_batch_received_after_the_stop_is_handed_back_by_the_loop_thread(
    sqs, queues, redis_url, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    # Given a poller whose long poll is in flight when it is told to stop
    rig = make_rig(sqs, queues, redis_url, key_prefix)
    running = Running(rig)
    releases: list[threading.Thread] = []

    def stop_during_the_receive(**_: object) -> None:
        running.stop.set()

    def record_release(**_: object) -> None:
        releases.append(threading.current_thread())

    rig.send(to_body(delivered(order="322-LATE-1")))
    sqs.meta.events.register("before-call.sqs.ReceiveMessage", stop_during_the_receive)
    sqs.meta.events.register("before-call.sqs.ChangeMessageVisibilityBatch", record_release)
    try:
        with running:
            wait_for(lambda: not running.thread.is_alive())
    finally:
        sqs.meta.events.unregister("before-call.sqs.ReceiveMessage", stop_during_the_receive)
        sqs.meta.events.unregister("before-call.sqs.ChangeMessageVisibilityBatch", record_release)
    # Then what it received is not handled but handed back, on the loop's thread only
    assert rig.poller.totals.dispatched == 0
    assert rig.poller.totals.handed_back == 1
    assert releases == [running.thread]
    assert rig.counts(rig.queue_url) == (1, 0)
    rig.redis.close()
