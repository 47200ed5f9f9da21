"""``bwp-worker check``: is every dependency reachable and every credential accepted?

Each check is one short, read-only probe that returns a ``CheckResult``; none raises for
an unreachable dependency. What each probe does, and why it applies nothing:

- ``sqs-queue`` / ``dlq``: GetQueueAttributes (the DLQ is a warning when not configured).
- ``redis`` / ``broker``: PING; the broker through Celery's own connection (any transport).
- ``bwp-token``: one client-credentials POST; the token is read and dropped, never printed.
- ``bwp-order-api``: the worker's own order query for a made-up order id (read-only): a
  "not found" answer proves the query shape and the Read Order permission; an
  AccessDeniedError answered by the same query without the tracker fields names the
  missing package-tracker permission. Warns that 2024-01-01's query shape is inferred.
- ``oms``: one OPTIONS request. OPTIONS is safe by definition (RFC 9110 section 9.3.7),
  so no OMS may apply a delivery update for it, whereas HEAD is often routed to a GET
  handler that some servers do not have. Any status below 500 proves that the OMS
  answers; whether it accepts our credentials only a real push shows (``sync-order``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import botocore.exceptions
import httpx
import kombu.exceptions
import redis
from celery import Celery

from config.clients import make_http, make_redis, make_sqs, queue_name
from config.secrets import Redactor
from config.settings import REQUIRED, Settings, is_unset
from tasks.celery import make_app
from tasks.errors import ApiAccessDenied, BwpError, OrderNotVisibleYet
from tasks.order_api.client import classify
from tasks.order_api.queries import INFERRED_VERSIONS, order_request, selects_tracker
from tasks.order_api.token import Credentials
from tasks.sqs.errors import one_line

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeFilterType

Status = Literal["ok", "warn", "fail"]
Role = Literal["all", "poll", "worker"]

#: the checks that matter to each process, in the order they are printed
CHECKS_FOR: Final[dict[Role, tuple[str, ...]]] = {
    "all": (
        "configuration",
        "sqs-queue",
        "dlq",
        "redis",
        "broker",
        "bwp-token",
        "bwp-order-api",
        "oms",
    ),
    "poll": ("configuration", "sqs-queue", "dlq", "redis", "broker"),
    "worker": ("configuration", "dlq", "redis", "broker", "bwp-token", "bwp-order-api", "oms"),
}
#: the order id the order-API probe asks about (no order has it: "not found" is the answer)
PROBE_ORDER_ID: Final = "bwp-worker-check-probe"
_QUEUE_ATTRIBUTES: Final[list[QueueAttributeFilterType]] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != "fail"


@dataclass
class Probes:
    """The clients the checks use; ``build`` makes them from settings, ``close`` ends them."""

    settings: Settings
    sqs: SQSClient
    ledger: redis.Redis
    http: httpx.Client
    celery: Celery
    timeout: float
    #: the token endpoint's answer, asked once per run (bwp-token and bwp-order-api)
    token_answer: tuple[dict[str, Any], CheckResult | None] | None = None

    @classmethod
    def build(cls, settings: Settings, timeout: float) -> Probes:
        return cls(
            settings,
            make_sqs(settings, probe_timeout=timeout),
            make_redis(settings.redis_url, probe_timeout=timeout),
            make_http(settings, probe_timeout=timeout),
            make_app(settings),
            timeout,
        )

    def close(self) -> None:
        self.http.close()
        self.ledger.close()
        self.sqs.close()


def run_checks(probes: Probes, role: Role = "all") -> list[CheckResult]:
    """Run the checks ``role`` needs, in order; secrets are redacted from every detail."""
    scrubber = Redactor(probes.settings.secrets())
    results = []
    for name in CHECKS_FOR[role]:
        result = _CHECKS[name](probes, role)
        results.append(CheckResult(name, result.status, _clean(result.detail, scrubber)))
    return results


def _clean(detail: str, scrubber: Redactor) -> str:
    return " ".join(scrubber.scrub_text(detail).split())[:300]


def check_configuration(probes: Probes, role: Role) -> CheckResult:
    roles = ("poll", "worker") if role == "all" else (role,)
    settings = probes.settings
    parts: list[str] = []
    status: Status = "ok"
    for process in roles:
        missing = [n.upper() for n in REQUIRED[process] if is_unset(getattr(settings, n))]
        problems = [f"missing {', '.join(missing)}"] if missing else []
        notes = []
        if process == "worker" and not settings.pushes_protected():
            # a worker refuses to start so (Settings.require_for) unless it is allowed
            if settings.allow_unsigned_oms:
                notes.append("pushes unsigned and unauthenticated (ALLOW_UNSIGNED_OMS=true)")
            else:
                problems.append(
                    "pushes neither signed nor authenticated (set OMS_SIGNING_SECRET or"
                    " OMS_AUTH_TOKEN, or ALLOW_UNSIGNED_OMS=true)"
                )
        if problems:
            status = "fail"
        elif notes and status == "ok":
            status = "warn"
        parts.append(f"{process}: {', '.join(problems or ['ready', *notes])}")
    return CheckResult("configuration", status, "; ".join(parts))


def _queue(probes: Probes, name: str, url: str | None, variable: str) -> CheckResult:
    if not url:
        return CheckResult(name, "fail", f"{variable} is not set")
    try:
        attrs = probes.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=_QUEUE_ATTRIBUTES)
    except botocore.exceptions.ClientError as exc:
        return CheckResult(name, "fail", one_line(exc))
    except botocore.exceptions.BotoCoreError as exc:
        return CheckResult(name, "fail", f"unreachable: {type(exc).__name__}: {exc}")
    values = attrs.get("Attributes", {})
    visible = values.get("ApproximateNumberOfMessages", "?")
    in_flight = values.get("ApproximateNumberOfMessagesNotVisible", "?")
    return CheckResult(
        name, "ok", f"{queue_name(url)} answers ({visible} visible, {in_flight} in flight)"
    )


def check_queue(probes: Probes, _: Role) -> CheckResult:
    return _queue(probes, "sqs-queue", probes.settings.sqs_queue_url, "SQS_QUEUE_URL")


def check_dlq(probes: Probes, _: Role) -> CheckResult:
    if not probes.settings.sqs_dlq_url:
        return CheckResult(
            "dlq", "warn", "SQS_DLQ_URL not configured: poison messages stay until redrive"
        )
    return _queue(probes, "dlq", probes.settings.sqs_dlq_url, "SQS_DLQ_URL")


def check_redis(probes: Probes, _: Role) -> CheckResult:
    started = time.perf_counter()
    try:
        probes.ledger.ping()
    except redis.RedisError as exc:
        return CheckResult("redis", "fail", f"{type(exc).__name__}: {exc}")
    answered = f"PING answered in {_ms(started)}"
    policy = _eviction_policy(probes.ledger)
    if policy is not None and policy != "noeviction":
        why = "evicts ledger records and locks under memory pressure; set noeviction"
        return CheckResult("redis", "warn", f"{answered}; maxmemory-policy {policy} {why}")
    return CheckResult("redis", "ok", answered)


def _eviction_policy(client: redis.Redis) -> str | None:
    """Redis's maxmemory-policy, or None where CONFIG is not allowed (ElastiCache renames
    it: check the parameter group there)."""
    try:
        reply: dict[Any, Any] = client.config_get("maxmemory-policy")
    except redis.RedisError:
        return None
    value = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
    return value.decode() if isinstance(value, bytes) else value


def check_broker(probes: Probes, _: Role) -> CheckResult:
    """Connect the way Celery does (transport, TLS, key prefix), once, with a short timeout."""
    conn = probes.celery.connection_for_write()
    conn.transport_options = {
        **(conn.transport_options or {}),
        "socket_connect_timeout": probes.timeout,
        "socket_timeout": probes.timeout,
    }
    started = time.perf_counter()
    try:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=math.ceil(probes.timeout)
        )
    except (kombu.exceptions.KombuError, OSError) as exc:
        return CheckResult("broker", "fail", f"{type(exc).__name__}: {exc}")
    finally:
        conn.release()
    # as_uri() masks the password
    return CheckResult("broker", "ok", f"{conn.as_uri()} answers in {_ms(started)}")


def _token(probes: Probes, name: str) -> tuple[dict[str, Any], CheckResult | None]:
    """The token endpoint's answer, or the red line saying why there is none (asked once)."""
    if probes.token_answer is None:
        probes.token_answer = _ask_token(probes, name)
    return probes.token_answer


def _ask_token(probes: Probes, name: str) -> tuple[dict[str, Any], CheckResult | None]:
    s = probes.settings
    secret = s.bwp_client_secret.get_secret_value() if s.bwp_client_secret else ""
    if not s.bwp_client_id or not secret:
        return {}, CheckResult(name, "fail", "BWP_CLIENT_ID and BWP_CLIENT_SECRET must be set")
    form = Credentials(s.bwp_token_url, s.bwp_client_id, secret).form()
    try:
        response = probes.http.post(s.bwp_token_url, data=form)
    except httpx.HTTPError as exc:
        return {}, CheckResult(name, "fail", f"{s.bwp_token_url} unreachable: {_why(exc)}")
    status = response.status_code
    if status in (400, 401, 403):
        refusal = f"credentials refused: HTTP {status} {_oauth_error(response)}"
        return {}, CheckResult(name, "fail", refusal)
    if status != 200:
        return {}, CheckResult(name, "fail", f"token endpoint answered HTTP {status}")
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not payload.get("access_token"):
        return {}, CheckResult(name, "fail", "HTTP 200 without an access_token")
    return payload, None


def check_token(probes: Probes, _: Role) -> CheckResult:
    payload, refused = _token(probes, "bwp-token")
    if refused is not None:
        return refused
    expires_in = payload.get("expires_in", "?")
    return CheckResult("bwp-token", "ok", f"credentials accepted (token for {expires_in} s)")


def check_order_api(probes: Probes, _: Role) -> CheckResult:
    """The worker's order query for a made-up order: which permission, if any, is missing."""
    name, s = "bwp-order-api", probes.settings
    payload, refused = _token(probes, name)
    if refused is not None:
        return CheckResult(name, "warn", "not probed: no token (see bwp-token)")
    if not s.bwp_target_id:
        return CheckResult(
            name,
            "warn",
            "BWP_TARGET_ID not set (each event's business product is used): permissions "
            "not probed; a missing one shows as order_query_without_tracker in the logs",
        )
    status, detail = _permissions(probes, str(payload["access_token"]))
    version = s.bwp_api_version
    if status == "ok" and version in INFERRED_VERSIONS:
        status = "warn"
        detail += (
            f"; but {version}'s query shape is inferred from 2024-04-01's documentation: "
            "prefer 2024-04-01 or 2024-11-01"
        )
    return CheckResult(name, status, detail)


def _permissions(probes: Probes, token: str) -> tuple[Status, str]:
    version = probes.settings.bwp_api_version
    answer = _probe_query(probes, token, tracker=True)
    if answer is None:
        tracker = " with the package-tracker fields" if selects_tracker(version) else ""
        return "ok", f"the {version} order query is accepted (Read Order){tracker}"
    if not isinstance(answer, ApiAccessDenied):
        return "fail", f"the order query failed: {answer}"
    if selects_tracker(version) and _probe_query(probes, token, tracker=False) is None:
        return "warn", (
            "AccessDeniedError on packageTracker: the credentials lack the package-tracker "
            "permission (View Package Tracker Data); queries run without the tracker "
            "fields, pushes carry no tracking, milestone events cannot be synced"
        )
    return "fail", (
        f"AccessDeniedError on the {version} order query: the credentials lack Read Order "
        "(View Order Data), or BWP_TARGET_ID is not their business product"
    )


def _probe_query(probes: Probes, token: str, *, tracker: bool) -> BwpError | None:
    """None when the API accepted the query (the made-up order is simply not found), else
    the error its answer stands for."""
    s = probes.settings
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-version": s.bwp_api_version,
        "x-api-target-id": s.bwp_target_id or "",
    }
    body = order_request(s.bwp_api_version, PROBE_ORDER_ID, tracker=tracker)
    try:
        response = probes.http.post(s.bwp_api_url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        return BwpError(f"{s.bwp_api_url} unreachable: {_why(exc)}")
    if response.status_code == 401:
        return BwpError("the API refused a fresh token (HTTP 401)")
    try:
        classify(response)
    except OrderNotVisibleYet:
        return None
    except BwpError as exc:
        return exc
    return None  # an order with that id exists: the query works all the same


def check_oms(probes: Probes, _: Role) -> CheckResult:
    url = probes.settings.oms_url
    if not url:
        return CheckResult("oms", "fail", "OMS_URL is not set")
    started = time.perf_counter()
    try:
        response = probes.http.options(url)
    except httpx.HTTPError as exc:
        return CheckResult("oms", "fail", f"unreachable: {_why(exc)}")
    status = response.status_code
    if status >= 500:
        return CheckResult("oms", "fail", f"answers OPTIONS with HTTP {status}")
    return CheckResult("oms", "ok", f"answers OPTIONS with HTTP {status} in {_ms(started)}")


_CHECKS: Final[dict[str, Callable[[Probes, Role], CheckResult]]] = {
    "configuration": check_configuration,
    "sqs-queue": check_queue,
    "dlq": check_dlq,
    "redis": check_redis,
    "broker": check_broker,
    "bwp-token": check_token,
    "bwp-order-api": check_order_api,
    "oms": check_oms,
}


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.0f} ms"


def _why(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _oauth_error(response: httpx.Response) -> str:
    """The OAuth ``error`` code of a refusal (RFC 6749 section 5.2), never the body itself."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return error if isinstance(error, str) and error.replace("_", "").isalnum() else ""
