"""A real Celery worker serves its own /metrics (WORKER_METRICS_PORT): what only its tasks
know, parks by kind, retries by error, milestones of unknown trackers, the sweep's
re-dispatches. Under prefork each child serves its own counters on the port + its index."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from sandbox.stack import LocalStack, StackOptions
from tasks.events.catalog import MILESTONE_EVENT
from tasks.events.samples import build_event, to_body
from tests.e2e.checks import pushes

pytestmark = pytest.mark.e2e


def free_port(span: int = 1) -> int:
    """A port with ``span - 1`` free ports after it (as far as one can tell)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if all(_free(port + i) for i in range(1, span)):
            return port
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def scrape(port: int) -> dict[str, float]:
    """The samples of ``/metrics`` (0 samples when it does not answer yet)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return {}
    values = {}
    for line in text.splitlines():
        if match := re.fullmatch(r"([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)", line):
            values[match.group(1)] = float(match.group(2))
    return values


PARKED_OMS = 'bwp_messages_parked_total{kind="permanent-oms-error"}'
RETRIED_OMS = 'bwp_sync_retries_total{error="OmsUnavailable"}'
UNKNOWN_TRACKERS = "bwp_milestone_unknown_trackers_total"


def test_a_worker_serves_the_counters_only_its_tasks_know(redis_url: str) -> None:
    port = free_port()
    with LocalStack(StackOptions(redis_url=redis_url)) as stack:
        stack.start_poller()
        stack.start_worker(WORKER_METRICS_PORT=str(port))
        # Given a worker whose endpoint answers, every park kind exported at 0 already
        stack.wait_until(lambda: PARKED_OMS in scrape(port), what="the worker's /metrics")
        before = scrape(port)
        assert before[PARKED_OMS] == 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200

        # When the OMS refuses one push for good (422)...
        stack.api.store.add_order("322-WM-1", "bp-wm", [("li-1", 1, "d-1")])
        stack.api.store.update_delivery("322-WM-1", "d-1", state="IN_TRANSIT")
        stack.oms.fail_next(1, status=422)
        stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", "322-WM-1", "d-1")
        stack.wait_until(lambda: scrape(port).get(PARKED_OMS) == 1, what="the park counted")
        # ...fails every attempt of another once (503: one Celery retry)...
        stack.api.store.add_order("322-WM-2", "bp-wm", [("li-1", 1, "d-1")])
        stack.api.store.update_delivery("322-WM-2", "d-1", state="IN_TRANSIT")
        stack.oms.fail_next(3, status=503)
        stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", "322-WM-2", "d-1")
        stack.wait_until(lambda: len(pushes(stack, "322-WM-2")) == 1, what="the retried push")
        # ...and a milestone names a tracker never pushed
        milestone = build_event(
            MILESTONE_EVENT, business_product_id="bp-wm", tracker=("ups", "1ZNEVER")
        )
        stack.send(to_body(milestone))
        stack.wait_until(
            lambda: scrape(port).get(UNKNOWN_TRACKERS) == before[UNKNOWN_TRACKERS] + 1,
            what="the unknown tracker counted",
        )
        after = scrape(port)
    # Then the worker's own endpoint counted each, once
    assert after[PARKED_OMS] == 1
    assert after[RETRIED_OMS] == 1
    assert after[UNKNOWN_TRACKERS] == before[UNKNOWN_TRACKERS] + 1
    assert after["bwp_stale_events_redispatched_total"] == 0


def test_prefork_children_serve_on_the_port_plus_their_index(redis_url: str) -> None:
    port = free_port(span=2)
    with LocalStack(StackOptions(redis_url=redis_url)) as stack:
        stack.start_worker(2, pool="prefork", WORKER_METRICS_PORT=str(port))
        # Then both children answer, each with its own counters; the main process serves none
        for child_port in (port, port + 1):
            stack.wait_until(
                lambda p=child_port: PARKED_OMS in scrape(p), what=f"a child on :{child_port}"
            )
        assert scrape(port + 2) == {}


def test_a_second_worker_on_a_taken_port_runs_on_and_says_so(redis_url: str) -> None:
    port = free_port()
    with LocalStack(StackOptions(redis_url=redis_url)) as stack:
        stack.start_poller()
        stack.start_worker(WORKER_METRICS_PORT=str(port))
        stack.wait_until(lambda: PARKED_OMS in scrape(port), what="the first worker's /metrics")
        # When a second worker is told the same port
        second = stack.start_worker(WORKER_METRICS_PORT=str(port))
        stack.wait_until(
            lambda: "worker_metrics_unavailable" in second.log_tail(200),
            what="the second worker's complaint",
        )
        # Then it still syncs deliveries (the first one is stopped to prove it)
        stack.processes[1].stop()
        stack.api.store.add_order("322-WM-3", "bp-wm", [("li-1", 1, "d-1")])
        stack.api.store.update_delivery("322-WM-3", "d-1", state="DELIVERED")
        stack.send_event("PACKAGE_DELIVERED", "322-WM-3", "d-1")
        stack.wait_until(lambda: len(pushes(stack, "322-WM-3")) == 1, what="the push")
