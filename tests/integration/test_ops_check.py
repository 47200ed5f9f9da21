"""``bwp-worker check`` against real services: moto's SQS server, real Redis, and the
sandbox Buy with Prime API and OMS over HTTP. The command runs as a real process with
its environment set, the way an operator (or ECS) runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from config.settings import Settings
from sandbox.oms import SandboxOms
from sandbox.redis_server import EmbeddedRedis
from sandbox.sqs import SqsServer
from tests.integration.test_ops_support import Sandbox, bwp_worker, closed_port, serve_sandbox
from worker.ops.check import Probes, run_checks

OMS_TOKEN = "check-oms-token"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with serve_sandbox(SandboxOms(auth_token=OMS_TOKEN)) as running:
        yield running


@pytest.fixture
def env(
    sandbox: Sandbox,
    sqs_server: SqsServer,
    queues: tuple[str, str],
    redis_url: str,
    key_prefix: str,
) -> dict[str, str]:
    queue_url, dlq_url = queues
    return {
        **sandbox.env(),
        "SQS_QUEUE_URL": queue_url,
        "SQS_DLQ_URL": dlq_url,
        "AWS_ENDPOINT_URL": sqs_server.url,
        "AWS_REGION": "us-east-1",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "CELERY_QUEUE": f"{key_prefix}q",
        "METRICS_PORT": "0",
        "BWP_TARGET_ID": "bp-check",
    }


def check_json(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    done = bwp_worker("check", "--json", "--timeout", "2", *args, env=env)
    return done.returncode, json.loads(done.stdout)


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in document["checks"]}


def test_every_line_is_green_against_the_sandbox(env: dict[str, str]) -> None:
    # Given every dependency up and configured
    # When an operator runs the check
    done = bwp_worker("check", env=env)
    # Then one green line per dependency, and exit 0
    lines = done.stdout.splitlines()
    names = [
        "configuration",
        "sqs-queue",
        "dlq",
        "redis",
        "broker",
        "bwp-token",
        "bwp-order-api",
        "oms",
    ]
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[:2] for line in lines[:-1]] == [["ok", name] for name in names]
    assert lines[-1] == "all green"


def test_json_output_lists_every_check(env: dict[str, str]) -> None:
    code, document = check_json(env)
    assert code == 0
    assert document["ok"] is True
    assert set(statuses(document).values()) == {"ok"}
    assert "credentials accepted" in next(
        c["detail"] for c in document["checks"] if c["name"] == "bwp-token"
    )


@pytest.mark.parametrize(
    ("broken", "override"),
    [
        ("sqs-queue", lambda env: {"SQS_QUEUE_URL": env["SQS_QUEUE_URL"] + "-gone"}),
        ("dlq", lambda env: {"SQS_DLQ_URL": env["SQS_DLQ_URL"] + "-gone"}),
        (
            "redis",
            lambda env: {
                "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
                "CELERY_BROKER_URL": env["REDIS_URL"],
            },
        ),
        ("broker", lambda env: {"CELERY_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0"}),
        ("bwp-token", lambda env: {"BWP_CLIENT_SECRET": "not-the-secret"}),
        ("oms", lambda env: {"OMS_URL": f"http://127.0.0.1:{closed_port()}/deliveries"}),
    ],
)
def test_a_missing_dependency_turns_its_own_line_red(
    env: dict[str, str], broken: str, override: Any
) -> None:
    # Given one dependency missing or refusing
    env = {**env, **override(env)}
    # When the check runs
    code, document = check_json(env)
    # Then exactly that line is red and the exit code says so
    assert code == 1
    assert document["ok"] is False
    assert {name for name, status in statuses(document).items() if status == "fail"} == {broken}


def test_red_line_in_human_output_names_the_failure(env: dict[str, str]) -> None:
    done = bwp_worker("check", env={**env, "BWP_CLIENT_SECRET": "not-the-secret"})
    assert done.returncode == 1
    [line] = [line for line in done.stdout.splitlines() if " bwp-token " in line]
    assert line.split()[0] == "FAIL"
    assert "HTTP 401 invalid_client" in line
    assert done.stdout.splitlines()[-1] == "1 red"


def test_secrets_and_tokens_are_never_printed(env: dict[str, str], sandbox: Sandbox) -> None:
    # Given the real credentials, then wrong ones and a broker URL carrying a password
    issued_before = sandbox.api.stats()["token_requests"]
    wrong = {
        "BWP_CLIENT_SECRET": "wrong-secret-value",
        "CELERY_BROKER_URL": f"redis://:hunter2-broker@127.0.0.1:{closed_port()}/0",
    }
    for extra in ({}, wrong):
        # When the check runs, in both output formats
        for fmt in ([], ["--json"]):
            done = bwp_worker("check", *fmt, env={**env, **extra})
            # Then no secret, password or token appears anywhere in its output
            output = done.stdout + done.stderr
            for secret in (sandbox.api.client_secret, OMS_TOKEN, *wrong.values()):
                assert secret not in output
            assert "hunter2-broker" not in output
            assert "access_token" not in output
    # and the token endpoint was asked exactly once per run
    assert sandbox.api.stats()["token_requests"] == issued_before + 4


def test_oms_check_applies_nothing(env: dict[str, str], sandbox: Sandbox) -> None:
    before = len(sandbox.oms.attempts)
    code, _ = check_json(env)
    assert code == 0
    assert len(sandbox.oms.attempts) == before  # OPTIONS never reaches the delivery handler


def test_unset_dlq_is_a_warning_not_a_failure(env: dict[str, str]) -> None:
    code, document = check_json({**env, "SQS_DLQ_URL": ""})
    assert code == 0
    assert statuses(document)["dlq"] == "warn"
    assert document["ok"] is True


def test_missing_variables_are_named_per_process(env: dict[str, str]) -> None:
    # Given a poller's environment: no API credentials, no OMS
    env = {**env, "BWP_CLIENT_ID": "", "BWP_CLIENT_SECRET": "", "OMS_URL": ""}
    # When the whole check runs, configuration names what the worker lacks
    code, document = check_json(env)
    [configuration] = [c for c in document["checks"] if c["name"] == "configuration"]
    assert code == 1
    assert configuration["detail"] == (
        "poll: ready; worker: missing BWP_CLIENT_ID, BWP_CLIENT_SECRET, OMS_URL"
    )
    # and the poller's own check is green
    code, document = check_json(env, "--for", "poll")
    assert code == 0
    assert list(statuses(document)) == ["configuration", "sqs-queue", "dlq", "redis", "broker"]


def test_invalid_configuration_exits_2_with_one_line(env: dict[str, str]) -> None:
    done = bwp_worker("check", env={**env, "METRICS_PORT": "99999"})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "bwp-worker: configuration error: METRICS_PORT: Input should be less than or equal to 65535"
    ]


def test_run_checks_is_a_plain_function(env: dict[str, str], key_prefix: str) -> None:
    # Given settings built in-process (no environment), pointing at the same services
    settings = Settings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    probes = Probes.build(settings, timeout=2.0)
    try:
        results = run_checks(probes, "worker")
    finally:
        probes.close()
    assert [(r.name, r.status) for r in results] == [
        ("configuration", "ok"),
        ("dlq", "ok"),
        ("redis", "ok"),
        ("broker", "ok"),
        ("bwp-token", "ok"),
        ("bwp-order-api", "ok"),
        ("oms", "ok"),
    ]


def test_a_redis_that_may_evict_is_a_warning(env: dict[str, str]) -> None:
    # Given a Redis with ElastiCache's default eviction policy (ledger keys carry a TTL)
    with EmbeddedRedis(extra_args=("--maxmemory-policy", "volatile-lru")) as evicting:
        # When an operator checks
        code, document = check_json({**env, "REDIS_URL": evicting.url}, "--for", "poll")
    # Then the redis line warns and names the fix, and the check still passes
    redis_check = next(c for c in document["checks"] if c["name"] == "redis")
    assert redis_check["status"] == "warn"
    assert "maxmemory-policy volatile-lru" in redis_check["detail"]
    assert "noeviction" in redis_check["detail"]
    assert code == 0


# --- the order API: which permission is missing ---------------------------------------------


def order_api_line(document: dict[str, Any]) -> dict[str, Any]:
    return dict(next(c for c in document["checks"] if c["name"] == "bwp-order-api"))


def test_the_order_query_is_probed_with_the_workers_own_query(
    env: dict[str, str], sandbox: Sandbox
) -> None:
    before = sandbox.api.stats()["order_queries"]
    code, document = check_json(env)
    line = order_api_line(document)
    assert code == 0
    assert line["status"] == "ok"
    assert "2024-11-01 order query is accepted" in line["detail"]
    assert "package-tracker fields" in line["detail"]
    assert sandbox.api.stats()["order_queries"] == before + 1  # one read-only query
    assert sandbox.api.stats()["mutations"] == 0


def test_credentials_without_the_tracker_permission_are_named(
    env: dict[str, str], sandbox: Sandbox
) -> None:
    # Given credentials the API refuses packageTracker (Read Order only)
    sandbox.api.tracker_permission = False
    try:
        code, document = check_json(env)
    finally:
        sandbox.api.tracker_permission = True
    # Then the line warns and names the missing permission; the worker still runs
    line = order_api_line(document)
    assert line["status"] == "warn"
    assert "package-tracker permission (View Package Tracker Data)" in line["detail"]
    assert code == 0


def test_credentials_without_read_order_turn_the_line_red(
    env: dict[str, str], sandbox: Sandbox
) -> None:
    # Given an API that denies the query with and without the tracker fields
    sandbox.api.inject("access_denied", 2)
    try:
        code, document = check_json(env)
    finally:
        sandbox.api.clear_faults()
    line = order_api_line(document)
    assert (code, line["status"]) == (1, "fail")
    assert "lack Read Order (View Order Data)" in line["detail"]


def test_the_inferred_2024_01_01_query_shape_is_a_warning(env: dict[str, str]) -> None:
    code, document = check_json({**env, "BWP_API_VERSION": "2024-01-01"})
    line = order_api_line(document)
    assert (code, line["status"]) == (0, "warn")
    assert "2024-01-01's query shape is inferred" in line["detail"]
    code, document = check_json({**env, "BWP_API_VERSION": "2024-04-01"})
    assert order_api_line(document)["status"] == "ok"


def test_without_a_target_id_the_permissions_are_not_probed(env: dict[str, str]) -> None:
    code, document = check_json({**env, "BWP_TARGET_ID": ""})
    line = order_api_line(document)
    assert (code, line["status"]) == (0, "warn")
    assert "BWP_TARGET_ID not set" in line["detail"]


def test_a_worker_that_would_push_unsigned_and_unauthenticated_is_red(
    env: dict[str, str],
) -> None:
    # Given a worker's environment with neither a signing secret nor an OMS token
    env = {**env, "OMS_SIGNING_SECRET": "", "OMS_AUTH_TOKEN": ""}
    # When the worker's checks run, configuration is red and says what to set
    code, document = check_json(env, "--for", "worker")
    [configuration] = [c for c in document["checks"] if c["name"] == "configuration"]
    assert code == 1 and configuration["status"] == "fail"
    assert configuration["detail"] == (
        "worker: pushes neither signed nor authenticated (set OMS_SIGNING_SECRET or"
        " OMS_AUTH_TOKEN, or ALLOW_UNSIGNED_OMS=true)"
    )
    # And allowed on purpose, it is a warning that names the allowance
    code, document = check_json({**env, "ALLOW_UNSIGNED_OMS": "true"}, "--for", "worker")
    [configuration] = [c for c in document["checks"] if c["name"] == "configuration"]
    assert code == 0 and configuration["status"] == "warn"
    assert configuration["detail"] == (
        "worker: ready, pushes unsigned and unauthenticated (ALLOW_UNSIGNED_OMS=true)"
    )
