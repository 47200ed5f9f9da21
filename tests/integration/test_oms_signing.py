"""Rotating the OMS signing secret: while ``OMS_PREVIOUS_SIGNING_SECRET`` is set, every push
carries one ``v1=`` per secret, so an OMS that knows either one accepts it; and a worker
never pushes unsigned and unauthenticated by accident. Real ``bwp-worker sync-order``
processes against the sandbox API and OMS over HTTP, real Redis."""

from __future__ import annotations

import itertools

import pytest

from sandbox.oms import SandboxOms
from tests.integration.test_ops_support import bwp_worker, serve_sandbox

OLD, NEW = "signing-secret-2023-Q4", "signing-secret-2024-Q1"
BP = "bp-rotation"
_orders = itertools.count(1)


@pytest.mark.parametrize(
    ("oms_knows", "accepted"),
    [
        (OLD, True),  # the worker rotated first: the OMS still verifies the previous one
        (NEW, True),  # the OMS rotated first
        ("some-other-secret", False),
    ],
)
def test_pushes_during_a_rotation_verify_with_either_secret(
    redis_url: str, key_prefix: str, oms_knows: str, accepted: bool
) -> None:
    # Given an OMS that verifies signatures with one secret
    with serve_sandbox(SandboxOms(signing_secret=oms_knows)) as sandbox:
        order_id = f"322-ROT-{next(_orders):06d}"
        sandbox.api.store.add_order(order_id, BP, [("li-1", 1, "d-1")])
        sandbox.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
        env = {
            **sandbox.env(),
            "OMS_SIGNING_SECRET": NEW,
            "OMS_PREVIOUS_SIGNING_SECRET": OLD,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": key_prefix,
        }
        # When a worker configured mid-rotation pushes a delivery
        done = bwp_worker("sync-order", order_id, "--business-product-id", BP, env=env)
        attempts = sandbox.oms.attempts
    # Then the header had both values, and the push was applied exactly when the OMS
    # knows one of them
    assert [a.headers["x-signature"].count(",v1=") for a in attempts] == [2]
    assert (done.returncode == 0) is accepted, done.stdout + done.stderr
    assert [a.status for a in attempts] == [200 if accepted else 401]
    for secret in (OLD, NEW):
        assert secret not in done.stdout + done.stderr


def test_sync_order_refuses_to_push_unsigned_and_unauthenticated(
    redis_url: str, key_prefix: str
) -> None:
    # Given an OMS that takes anything, and a worker with no signing secret and no token
    with serve_sandbox(SandboxOms()) as sandbox:
        order_id = f"322-ROT-{next(_orders):06d}"
        sandbox.api.store.add_order(order_id, BP, [("li-1", 1, "d-1")])
        sandbox.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
        env = {**sandbox.env(), "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": key_prefix}
        env |= {"OMS_SIGNING_SECRET": "", "OMS_AUTH_TOKEN": ""}
        # When the operator syncs an order
        refused = bwp_worker("sync-order", order_id, "--business-product-id", BP, env=env)
        # Then nothing is pushed: one line, exit 2
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            "bwp-worker: configuration error: OMS_SIGNING_SECRET or OMS_AUTH_TOKEN is required:"
            " pushes would be neither signed nor authenticated (ALLOW_UNSIGNED_OMS=true allows it)"
        ]
        assert sandbox.oms.attempts == []
        # And allowed on purpose, it pushes
        allowed = bwp_worker(
            "sync-order", order_id, "--business-product-id", BP,
            env={**env, "ALLOW_UNSIGNED_OMS": "true"},
        )  # fmt: skip
        assert allowed.returncode == 0, allowed.stderr
        assert [a.status for a in sandbox.oms.attempts] == [200]
