"""An outage pauses the work instead of spending it (design.md section 3.7): the OMS, the
order API or the token endpoint down for longer than the whole retry budget while events
arrive. Nothing is parked; the dependency hears about one request a second while down;
every delivery is at the OMS within 30 s of its return.

Real poller and worker processes, with TASK_MAX_RETRIES=3 (the budget runs out in a few
seconds of retries) and the default circuit settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from sandbox.stack import LocalStack, StackOptions
from tests.e2e.checks import pushes

pytestmark = pytest.mark.e2e

#: seconds the dependency stays down: several times the whole retry budget
OUTAGE = 15.0
#: the requests a dependency may see while down: about one probe a second, plus the
#: failures in a row that open the circuit (threshold 5, in-call attempts included) and
#: the attempts already in flight then
ALLOWED = OUTAGE * 1.0 + 12


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[LocalStack]:
    options = StackOptions(redis_url=redis_url, extra_env={"TASK_MAX_RETRIES": "3"})
    with LocalStack(options) as running:
        running.start_poller()
        running.start_worker()
        yield running


def through_an_outage(
    stack: LocalStack,
    prefix: str,
    down: Callable[[bool], None],
    requests: Callable[[], int],
) -> None:
    orders = [f"322-OUT-{prefix}-{i}" for i in range(6)]
    for order_id in orders:
        stack.api.store.add_order(order_id, "bp-out", [("li", 1, "d-1")])
        stack.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
    # Given the dependency goes down, and events keep arriving during the outage
    down(True)
    before, down_at = requests(), time.monotonic()
    keys = []
    for order_id in orders:
        event = stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id, "d-1")
        keys.append(event["detail"]["idempotencyKey"])
        time.sleep(OUTAGE / 2 / len(orders))
    while time.monotonic() - down_at < OUTAGE:
        time.sleep(0.1)
    # When it comes back
    while_down = requests() - before
    down(False)
    up_at = time.monotonic()
    # Then every delivery reaches the OMS within 30 s, none parked, every event done
    stack.wait_until(
        lambda: all(len(pushes(stack, o)) == 1 for o in orders) and stack.settled(keys),
        timeout=30,
        what="every delivery at the OMS after the outage: " + stack.unsettled(keys),
    )
    assert time.monotonic() - up_at < 30
    assert stack.queue_counts(stack.dlq_url) == (0, 0)
    # ... and while down, the dependency was probed, not hammered
    assert while_down <= ALLOWED, f"{while_down} requests in {OUTAGE} s of outage"


def test_the_oms_down_for_longer_than_the_retry_budget(stack: LocalStack) -> None:
    def oms_requests() -> int:
        return len(stack.oms.attempts)

    through_an_outage(stack, "OMS", stack.oms.set_down, oms_requests)


def test_the_order_api_down_for_longer_than_the_retry_budget(stack: LocalStack) -> None:
    def api_requests() -> int:
        return int(stack.api.stats()["graphql_requests"])

    through_an_outage(stack, "API", lambda d: stack.api.set_down(graphql=d), api_requests)


def test_the_token_endpoint_down_for_longer_than_the_retry_budget(stack: LocalStack) -> None:
    def token_requests() -> int:
        return int(stack.api.stats()["token_requests"])

    def token_down(down: bool) -> None:
        stack.api.set_down(token=down)
        if down:
            stack.api.invalidate_tokens()  # every cached token is refused: a refresh is due

    through_an_outage(stack, "TOKEN", token_down, token_requests)
