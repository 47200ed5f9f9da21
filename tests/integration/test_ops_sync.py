"""``bwp-worker sync-order`` against the sandbox API and OMS over HTTP and real Redis: the
order is queried, what changed is pushed once through the guard, and a second run finds
nothing to push."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from config.settings import Settings
from sandbox.oms import SandboxOms
from tasks.delivery.outcome import Outcome
from tasks.runtime import build_runtime
from tests.integration.test_ops_support import Sandbox, bwp_worker, serve_sandbox
from worker.ops.sync import MANUAL_SYNC, resync_order

SIGNING_SECRET = "sync-signing-secret"
OMS_TOKEN = "sync-oms-token"
BP = "bp-sync"
_orders = itertools.count(1)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with serve_sandbox(SandboxOms(signing_secret=SIGNING_SECRET, auth_token=OMS_TOKEN)) as running:
        yield running


@pytest.fixture
def env(sandbox: Sandbox, redis_url: str, key_prefix: str) -> dict[str, str]:
    return {
        **sandbox.env(),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "CELERY_QUEUE": f"{key_prefix}q",
        "LOG_FORMAT": "json",
    }


def new_order(sandbox: Sandbox) -> str:
    """An order with one delivery in transit (tracked) and one delivered."""
    order_id = f"322-SYNC-{next(_orders):06d}"
    sandbox.api.store.add_order(order_id, BP, [("li-1", 2, "d-1"), ("li-2", 1, "d-2")])
    sandbox.api.store.update_delivery(
        order_id, "d-1", state="IN_TRANSIT", tracking_number="TN1", carrier_code="UPS"
    )
    sandbox.api.store.update_delivery(order_id, "d-2", state="DELIVERED")
    return order_id


def pushes(sandbox: Sandbox, order_id: str) -> list[dict[str, object]]:
    return [p.body for p in sandbox.oms.received if p.body["orderId"] == order_id]


def test_pushes_once_then_reports_unchanged(sandbox: Sandbox, env: dict[str, str]) -> None:
    # Given an order the OMS has never heard of
    order_id = new_order(sandbox)
    # When the operator syncs it twice
    first = bwp_worker("sync-order", order_id, "--business-product-id", BP, env=env)
    second = bwp_worker("sync-order", order_id, "--business-product-id", BP, env=env)
    # Then the first run pushes each delivery, the second finds nothing new
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"{order_id}/d-1  pushed", f"{order_id}/d-2  pushed"]
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        f"{order_id}/d-1  unchanged",
        f"{order_id}/d-2  unchanged",
    ]
    bodies = pushes(sandbox, order_id)
    assert sorted((b["deliveryId"], b["state"]) for b in bodies) == [
        ("d-1", "IN_TRANSIT"),
        ("d-2", "DELIVERED"),
    ]
    assert {b["sourceEvent"]["detailType"] for b in bodies} == {MANUAL_SYNC}  # type: ignore[index]


def test_a_change_at_the_api_is_pushed_by_the_next_sync(
    sandbox: Sandbox, env: dict[str, str]
) -> None:
    # Given an order synced once, driven by the plain function with real collaborators
    order_id = new_order(sandbox)
    settings = Settings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    runtime = build_runtime(settings)
    try:
        now = datetime.now(UTC)
        assert resync_order(runtime.deps, BP, order_id, now) == {
            "d-1": Outcome.PUSHED,
            "d-2": Outcome.PUSHED,
        }
        # When one delivery moves on at the API
        sandbox.api.store.update_delivery(order_id, "d-1", state="DELIVERED")
        # Then only that one is pushed again
        assert resync_order(runtime.deps, BP, order_id, now) == {
            "d-1": Outcome.PUSHED,
            "d-2": Outcome.UNCHANGED,
        }
    finally:
        runtime.close()
    assert [b["state"] for b in pushes(sandbox, order_id) if b["deliveryId"] == "d-1"] == [
        "IN_TRANSIT",
        "DELIVERED",
    ]


def test_business_product_defaults_to_the_target_id(sandbox: Sandbox, env: dict[str, str]) -> None:
    order_id = new_order(sandbox)
    done = bwp_worker("sync-order", order_id, env={**env, "BWP_TARGET_ID": BP})
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2


def test_without_a_business_product_the_usage_is_refused(env: dict[str, str]) -> None:
    done = bwp_worker("sync-order", "322-ANY", env=env)
    assert done.returncode == 2
    assert "--business-product-id is required when BWP_TARGET_ID is not set" in done.stderr


def test_an_unknown_order_fails_with_one_line(sandbox: Sandbox, env: dict[str, str]) -> None:
    done = bwp_worker("sync-order", "322-NOT-THERE", "--business-product-id", BP, env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    [reason] = [line for line in done.stderr.splitlines() if line.startswith("bwp-worker:")]
    assert reason.startswith("bwp-worker: sync-order 322-NOT-THERE failed: OrderNotVisibleYet:")


def test_an_oms_refusal_fails_without_leaking_secrets(
    sandbox: Sandbox, env: dict[str, str]
) -> None:
    # Given an OMS that refuses our token
    order_id = new_order(sandbox)
    env = {**env, "OMS_AUTH_TOKEN": "a-token-the-oms-does-not-know"}
    # When the order is synced
    done = bwp_worker("sync-order", order_id, "--business-product-id", BP, env=env)
    # Then the command fails with the OMS's answer and never prints the token
    assert done.returncode == 1
    assert "PermanentOmsError: OMS answered HTTP 401" in done.stderr
    output = done.stdout + done.stderr
    for secret in ("a-token-the-oms-does-not-know", SIGNING_SECRET, sandbox.api.client_secret):
        assert secret not in output
    assert pushes(sandbox, order_id) == []
