"""The running poller's /metrics move with the events it sees; /healthz follows its loop.
``bwp-worker send-event`` puts a sample event on the queue as EventBridge would."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest

from sandbox.stack import LocalStack, StackOptions
from tests.e2e.checks import pushes
from worker.poller.metrics import MetricsServer, PollerMetrics, heartbeat_fresh

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)", line)
        if match and not line.startswith("#"):
            values[match.group(1)] = float(match.group(2))
    return values


def healthz(port: int) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
    except httpx.TransportError:
        return 0  # not serving yet


def test_counters_move_with_the_events_sent(redis_url: str) -> None:
    port = free_port()
    with LocalStack(StackOptions(redis_url=redis_url)) as stack:
        stack.start_poller(METRICS_PORT=str(port))
        stack.start_worker()
        stack.wait_until(lambda: healthz(port) == 200, what="a healthy poller")
        before = scrape(port)
        # When: two twins, one redelivery, one malformed body, one unsupported type
        stack.api.store.add_order("322-MET-1", "bp", [("li", 1, "d-1")])
        stack.api.store.update_delivery("322-MET-1", "d-1", state="DELIVERED")
        first = stack.send_event("PACKAGE_DELIVERED", "322-MET-1", "d-1")
        stack.wait_until(lambda: len(pushes(stack, "322-MET-1")) == 1, what="first push")
        stack.send_event("DELIVERY_COMPLETED", "322-MET-1", "d-1")
        stack.send(json.dumps(first))
        stack.send("{not json")
        stack.send(
            json.dumps({**first, "id": "evt-x", "detail-type": "ORDER_CONFIRMED", "detail": {}})
        )
        stack.wait_until(
            lambda: (
                scrape(port).get("bwp_messages_received_total", 0)
                - before.get("bwp_messages_received_total", 0)
                >= 5
            ),
            what="five receipts",
        )
        stack.wait_until(lambda: stack.queue_counts() == (0, 0), what="queue drained")
        after = scrape(port)

        def moved(name: str) -> float:
            return after.get(name, 0.0) - before.get(name, 0.0)

        assert moved("bwp_messages_received_total") == 5
        assert moved("bwp_events_dispatched_total") == 1
        assert moved("bwp_twins_absorbed_total") == 1
        assert moved("bwp_duplicates_total") == 1
        assert moved('bwp_messages_parked_total{kind="malformed"}') == 1
        assert moved('bwp_unsupported_events_total{detail_type="ORDER_CONFIRMED"}') == 1
        assert moved('bwp_sqs_requests_total{action="delete"}') >= 1
        assert after["bwp_loop_heartbeat_timestamp"] > 0


def test_healthz_fails_when_the_loop_has_not_polled_recently() -> None:
    metrics = PollerMetrics()
    server = MetricsServer(metrics.render, 0, lambda: heartbeat_fresh(metrics, max_age=60)).start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        assert httpx.get(url, timeout=5).status_code == 503  # never polled
        metrics.beat(time.time())
        assert httpx.get(url, timeout=5).status_code == 200
        metrics.beat(time.time() - 120)
        assert httpx.get(url, timeout=5).status_code == 503  # stale
    finally:
        server.stop()


def test_send_event_puts_a_sample_event_that_the_worker_syncs(redis_url: str) -> None:
    with LocalStack(StackOptions(redis_url=redis_url)) as stack:
        stack.start_poller()
        stack.start_worker()
        stack.api.store.add_order("322-SEND-1", "bp-send", [("li", 3, "d-7")])
        stack.api.store.update_delivery("322-SEND-1", "d-7", state="IN_TRANSIT")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "worker",
                "send-event",
                "--detail-type",
                "DELIVERY_IN_TRANSIT",
                "--business-product-id",
                "bp-send",
                "--order-id",
                "322-SEND-1",
                "--delivery-id",
                "d-7",
            ],
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["queueUrl"] == stack.queue_url
        stack.wait_until(lambda: len(pushes(stack, "322-SEND-1")) == 1, what="the push")
        assert pushes(stack, "322-SEND-1")[0]["state"] == "IN_TRANSIT"


def send_event(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "send-event", *args],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_send_event_sends_a_milestone_that_the_worker_syncs(redis_url: str) -> None:
    with LocalStack(StackOptions(redis_url=redis_url)) as stack:
        stack.start_poller()
        stack.start_worker()
        # Given a delivery pushed with its tracking number
        stack.api.store.add_order("322-SEND-2", "bp-send", [("li", 1, "d-1")])
        stack.api.store.update_delivery(
            "322-SEND-2", "d-1", state="IN_TRANSIT", tracking_number="1ZSEND2", carrier_code="UPS"
        )
        stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", "322-SEND-2", "d-1")
        stack.wait_until(lambda: len(pushes(stack, "322-SEND-2")) == 1, what="the first push")
        # When the carrier's milestone changes and send-event announces it by its tracker
        stack.api.store.update_delivery("322-SEND-2", "d-1", milestone="OUT_FOR_DELIVERY")
        result = send_event(
            stack,
            "--detail-type",
            "PACKAGE_TRACKER_MILESTONE_CHANGED",
            "--business-product-id",
            "bp-send",
            "--carrier",
            "UPS",  # as the API spells it (the tracker index compares it as is)
            "--tracking-number",
            "1ZSEND2",
        )
        assert result.returncode == 0, result.stderr
        # Then the worker finds the delivery by its tracker and pushes the milestone
        stack.wait_until(lambda: len(pushes(stack, "322-SEND-2")) == 2, what="the milestone push")
        assert pushes(stack, "322-SEND-2")[1]["tracking"]["milestone"] == "OUT_FOR_DELIVERY"


def test_send_event_refuses_a_milestone_without_its_tracker() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "worker", "send-event"),
            *("--queue-url", "http://127.0.0.1:9/0/q"),
            *("--detail-type", "PACKAGE_TRACKER_MILESTONE_CHANGED"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--tracking-number" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_is_the_packages() -> None:
    from importlib.metadata import version

    result = subprocess.run(
        [sys.executable, "-m", "worker", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"bwp-worker, version {version('bwp-worker')}"


def test_the_poller_serves_metrics_on_metrics_host_only(redis_url: str) -> None:
    # Given a poller told to listen on one loopback address (127/8 is all this host's)
    port = free_port()
    with LocalStack(StackOptions(redis_url=redis_url)) as stack:
        stack.start_poller(METRICS_PORT=str(port), METRICS_HOST="127.0.0.2")

        def healthy_there() -> bool:
            try:
                return httpx.get(f"http://127.0.0.2:{port}/healthz", timeout=2).is_success
            except httpx.TransportError:
                return False

        # Then /healthz answers there
        stack.wait_until(healthy_there, what="a healthy poller on 127.0.0.2")
        # and nothing listens on the port at any other address
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
