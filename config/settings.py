"""The one typed settings object, read from the environment once at an entry point.

Every variable of the contract (docs/contract.md) plus the project's tuning knobs, each
with a safe default. Nothing here talks to the network.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, Literal, NoReturn, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config import validate
from config.secrets import masked_url

ApiVersion = Literal["2024-01-01", "2024-04-01", "2024-11-01"]

#: what each process refuses to start without
REQUIRED: dict[str, tuple[str, ...]] = {
    "poll": ("sqs_queue_url",),
    "worker": ("bwp_client_id", "bwp_client_secret", "oms_url"),
}

#: URLs that carry a credential (client secret, bearer tokens): https unless loopback
CREDENTIAL_URLS = ("bwp_api_url", "bwp_token_url", "oms_url")
#: settings with a default that an empty value must not replace silently
NOT_BLANK = frozenset({"aws_region", "redis_url", "bwp_api_url", "bwp_token_url"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Redis URLs whose password (and all Redis holds) must not cross the network in clear
REDIS_URLS = ("redis_url", "celery_broker_url")
UNPROTECTED_PUSHES = (
    "OMS_SIGNING_SECRET or OMS_AUTH_TOKEN is required: pushes would be neither signed nor"
    " authenticated (ALLOW_UNSIGNED_OMS=true allows it)"
)
#: byte caps on one decoded response body (an order's fits 4 MiB many times over)
API_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
TOKEN_MAX_RESPONSE_BYTES = 64 * 1024
OMS_MAX_RESPONSE_BYTES = 64 * 1024


def is_unset(value: object) -> bool:
    """None, an empty string, or an empty secret."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value is None or (isinstance(value, str) and not value.strip())


class SettingsError(Exception):
    """A variable is missing or invalid. ``str()`` is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    # --- the contract's variables ---------------------------------------------------
    sqs_queue_url: str | None = None
    sqs_dlq_url: str | None = None
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    redis_url: str = "redis://localhost:6379/0"
    celery_broker_url: str | None = None
    bwp_api_url: str = "https://api.buywithprime.amazon.com/graphql"
    bwp_token_url: str = "https://api.buywithprime.amazon.com/token"  # noqa: S105 - a URL
    bwp_client_id: str | None = None
    bwp_client_secret: SecretStr | None = None
    bwp_api_version: ApiVersion = "2024-11-01"
    bwp_target_id: str | None = None
    oms_url: str | None = None
    oms_signing_secret: SecretStr | None = None
    oms_auth_token: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    #: a Celery worker's own /metrics (parks, retries, skipped siblings...); 0 disables
    worker_metrics_port: int = Field(default=9103, ge=0, le=65535)
    #: the standard proxy variables, honoured by every HTTP client (order API, token, OMS;
    #: boto3 reads them itself); loopback hosts are always reached directly
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    #: the address /metrics and /healthz listen on (0.0.0.0: every interface)
    metrics_host: str = Field(default="0.0.0.0", min_length=1, max_length=255)

    # --- the project's own knobs ----------------------------------------------------
    #: prefix of every Redis key the worker writes (ledger, delivery state, token, broker)
    redis_key_prefix: str = Field(default="bwp:", min_length=1, max_length=64)
    #: the Celery queue the poller publishes to and the workers consume
    celery_queue: str = Field(default="bwp-sync", min_length=1, max_length=128)
    sqs_wait_time_seconds: int = Field(default=20, ge=0, le=20)
    sqs_visibility_timeout: int = Field(default=60, ge=5, le=43200)
    #: "ack" counts and deletes well-formed events of other detail-types; "park" sends
    #: them to the DLQ as kind `unsupported`
    unsupported_events: Literal["ack", "park"] = "ack"
    #: httpx's timeout, per phase (connect, each read, write, pool)
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    #: wall-clock budget of one HTTP request, all phases together: a server that
    #: trickles bytes cannot hold a worker thread past it (tasks/http/deadline.py)
    http_total_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    #: wall-clock budget of one task run; below BROKER_VISIBILITY_TIMEOUT, or the broker
    #: hands a still-running task to a second worker
    task_deadline_seconds: float = Field(default=120.0, gt=0)
    #: accept http:// for OMS_URL, BWP_API_URL and BWP_TOKEN_URL on non-loopback hosts
    #: (credentials then cross the network in clear); loopback is always allowed
    allow_insecure_http: bool = False
    #: attempts inside one call (tenacity), order API and OMS alike
    http_max_attempts: int = Field(default=3, ge=1, le=10)
    #: Celery-level retries of a task after the in-call attempts failed
    task_max_retries: int = Field(default=8, ge=0, le=50)
    task_retry_base_seconds: float = Field(default=5.0, gt=0)
    task_retry_cap_seconds: float = Field(default=300.0, gt=0)
    #: retries of "order or delivery not found" (an event can race the order)
    not_found_max_retries: int = Field(default=4, ge=0, le=20)
    #: a poller's claim on an event before publishing; keep it below the SQS visibility
    #: timeout, so a message a crashed poller held is claimable when it reappears
    claim_ttl_seconds: int = Field(default=30, ge=2)
    queued_ttl_seconds: int = Field(default=2 * 86400, ge=60)
    done_ttl_seconds: int = Field(default=4 * 86400, ge=60)
    delivery_state_ttl_seconds: int = Field(default=30 * 86400, ge=3600)
    #: how long a pushed tracking number keeps pointing at its delivery (milestone events)
    tracker_ttl_seconds: int = Field(default=90 * 86400, ge=90 * 86400)
    #: a delivery lock's TTL: its holder renews it every third of this while the sync runs
    #: (a crashed holder frees it within this); not a bound on how long a sync may take
    delivery_lock_ttl_seconds: float = Field(default=15.0, ge=0.3)
    delivery_lock_wait_seconds: float = Field(default=5.0, ge=0)
    #: an event lease's TTL: the worker process holding the event's task (prefetched,
    #: running, or waiting for a retry countdown) renews it every third of this. A killed
    #: worker's events are dispatched again by the poller about this long after it died
    event_lease_seconds: float = Field(default=15.0, ge=1, le=300)
    #: a `queued` event no worker holds, while the Celery queue is empty, has lost its task
    #: on the way (popped by a worker that died at once, or a broker that lost its list):
    #: the poller dispatches it again once it stayed so this long
    orphan_grace_seconds: float = Field(default=10.0, ge=1, le=3600)
    #: times the poller dispatches an event again after its task was lost; past it the event
    #: is parked as `retries-exhausted` (a task that keeps killing its worker)
    max_redispatches: int = Field(default=5, ge=1, le=100)
    #: the DLQ's MaximumMessageSize: a parked message (body plus attributes) must fit. The
    #: reason is shortened to fit, never the body; a body that cannot fit is left to the
    #: queue's redrive policy
    sqs_dlq_max_message_bytes: int = Field(default=262_144, ge=1024, le=1_048_576)
    #: a `queued` ledger record older than this is re-dispatched by the sweep
    sweep_after_seconds: int = Field(default=900, ge=5)
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    #: kombu's unacked bookkeeping in the Redis broker (a killed worker's task comes back
    #: after BROKER_VISIBILITY_TIMEOUT). Off by default: the sweep re-dispatches such a task
    #: anyway (design.md section 8), and the bookkeeping cost ~15% of a task's CPU
    broker_ack_emulation: bool = False
    broker_visibility_timeout: int = Field(default=900, ge=5)
    #: workers start sending task events (Flower sees every task). Off saves ~0.5-1 ms of CPU
    #: per event (docs/performance.md); Flower switches them on when it connects anyway.
    worker_task_events: bool = True
    #: the poller pauses while the Celery queue holds more than this; 0 disables
    max_queue_depth: int = Field(default=2000, ge=0)
    #: outage-kind failures in a row (5xx, 429, timeouts, connection errors) one process
    #: sees before it opens a dependency's circuit for every worker
    circuit_threshold: int = Field(default=5, ge=1, le=1000)
    #: seconds between probes of an open circuit, across the whole deployment
    circuit_probe_interval_seconds: float = Field(default=1.0, gt=0, le=300)
    #: order-API calls per second across every worker (a Redis-backed GCRA); 0 = no limit
    api_rate_per_second: float = Field(default=20.0, ge=0)
    #: calls that may go at once before the rate applies
    api_burst: int = Field(default=10, ge=1)
    #: a non-terminal delivery not synced for this long is re-synced by reconciliation
    reconcile_after_seconds: int = Field(default=3600, ge=1)
    reconcile_interval_seconds: float = Field(default=300.0, gt=0)
    #: deliveries reconciled per run at most (bounded work)
    reconcile_batch: int = Field(default=100, ge=1, le=10000)
    #: messages one poller holds unsettled at most (intake pauses at this mark); far
    #: below SQS's 120,000 in-flight messages per queue, so several pollers fit
    max_held_messages: int = Field(default=5000, ge=10, le=100_000)
    #: body bytes one poller holds unsettled at most (intake pauses at this mark): the
    #: poller keeps each held body in memory, up to 256 KiB each
    max_held_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    #: seconds between the poller's settling ticks (one Redis round trip each)
    settle_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    #: how long a stopping poller waits past its long poll for the receive to return
    shutdown_grace_seconds: float = Field(default=5.0, ge=0, le=25)
    #: order/delivery pairs one event's resources may name (one task syncs them all);
    #: an event naming more is parked as malformed
    max_deliveries_per_event: int = Field(default=20, ge=1, le=1000)
    #: milestone events for one tracker within this window share one order query (the
    #: others wait it out, then are covered by a later query); 0 queries for each
    milestone_coalesce_seconds: float = Field(default=10.0, ge=0, le=600)
    #: the share of API_RATE_PER_SECOND (and API_BURST) that milestone queries may use
    milestone_api_share: float = Field(default=0.25, gt=0, le=1)

    # --- exposed surfaces and hostile input (each in README, "Security") --------------
    #: metrics connections served at once (a new one drops the oldest), and each one's
    #: wall-clock budget in all (not per recv)
    metrics_max_connections: int = Field(default=16, ge=1, le=1024)
    metrics_connection_deadline_seconds: float = Field(default=5.0, gt=0, le=60)
    #: decoded bytes read at most from one response, per endpoint (retryable past it)
    api_max_response_bytes: int = Field(default=API_MAX_RESPONSE_BYTES, ge=1024)
    token_max_response_bytes: int = Field(default=TOKEN_MAX_RESPONSE_BYTES, ge=1024)
    oms_max_response_bytes: int = Field(default=OMS_MAX_RESPONSE_BYTES, ge=1024)
    #: the signing secret being retired: X-Signature carries a second v1= made with it
    oms_previous_signing_secret: SecretStr | None = None
    #: explicit opt-outs: pushes neither signed nor authenticated; a Redis password in
    #: clear off loopback; Flower without authentication (honoured on loopback only)
    allow_unsigned_oms: bool = False
    allow_insecure_redis: bool = False
    allow_unauthenticated_flower: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Refuse malformed URLs, regions and queues, then settings that contradict each
        other; one line naming the variables."""
        for problem in [*self.malformed(), *self.contradictions()]:
            raise ValueError(problem)
        return self

    def malformed(self) -> list[str]:
        """Each URL, region or queue setting that cannot work, as one line naming it."""
        checks: list[tuple[str, Callable[[str], str | None]]] = [
            ("sqs_queue_url", validate.queue_url_problem),
            ("sqs_dlq_url", validate.queue_url_problem),
            ("aws_region", validate.region_problem),
            ("aws_endpoint_url", _http_url),
            ("redis_url", validate.redis_url_problem),
            ("celery_broker_url", validate.broker_url_problem),
            *[(name, _credential_url) for name in CREDENTIAL_URLS],
            ("http_proxy", _http_url),
            ("https_proxy", _http_url),
        ]
        found = []
        for name, check in checks:
            value = getattr(self, name)
            if value is None or (not value.strip() and name not in NOT_BLANK):
                continue
            if problem := check(value):
                found.append(f"{name.upper()}: {problem}")
        if not found and not self.aws_endpoint_url:
            found += self._queues_outside_the_region()
        return found

    def _queues_outside_the_region(self) -> list[str]:
        # boto3 sends every call to AWS_REGION's endpoint whatever host the queue URL
        # names: a queue of another region answers "does not exist".
        found = []
        for name in ("sqs_queue_url", "sqs_dlq_url"):
            url = getattr(self, name)
            region = validate.queue_region(url) if url else None
            if region is not None and region != self.aws_region:
                found.append(
                    f"{name.upper()} names a queue in {region} but AWS_REGION is "
                    f"{self.aws_region}; set AWS_REGION={region}"
                )
        return found

    def contradictions(self) -> list[str]:
        """Each pair of settings that cannot both hold, as one line naming them."""
        found = [
            f"{name.upper()}: {text}"
            for name in CREDENTIAL_URLS
            if (text := _insecure(getattr(self, name), allowed=self.allow_insecure_http))
        ]
        if not self.allow_insecure_redis:
            found += [
                f"{name.upper()}: {text}"
                for name in REDIS_URLS
                if (text := validate.redis_in_clear(getattr(self, name), LOOPBACK_HOSTS))
            ]
        if is_unset(self.oms_signing_secret) and not is_unset(self.oms_previous_signing_secret):
            found.append("OMS_PREVIOUS_SIGNING_SECRET is set without OMS_SIGNING_SECRET")
        below = [
            # A claim outliving the message's visibility blocks the message when SQS
            # hands it out again after a poller crash.
            ("claim_ttl_seconds", "sqs_visibility_timeout"),
        ]
        if self.broker_ack_emulation:
            below += [
                # Celery holds a countdown task unacked; past the broker's visibility
                # timeout the broker delivers it a second time.
                ("task_retry_cap_seconds", "broker_visibility_timeout"),
                # A task still running past it is handed to a second worker.
                ("task_deadline_seconds", "broker_visibility_timeout"),
            ]
        found += [
            f"{a.upper()} ({getattr(self, a):g}) must be below {b.upper()} ({getattr(self, b):g})"
            for a, b in below
            if getattr(self, a) >= getattr(self, b)
        ]
        at_most = (
            ("http_timeout_seconds", "http_total_timeout_seconds"),
            ("http_total_timeout_seconds", "task_deadline_seconds"),
            ("delivery_lock_wait_seconds", "task_deadline_seconds"),
        )
        found += [
            f"{a.upper()} ({getattr(self, a):g}) must not exceed {b.upper()} ({getattr(self, b):g})"
            for a, b in at_most
            if getattr(self, a) > getattr(self, b)
        ]
        return found

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def schedule_queue(self) -> str:
        """The Celery queue of the scheduled jobs (sweep, reconciliation): their own, so
        that a backlog of syncs cannot starve them."""
        return f"{self.celery_queue}.schedule"

    def require(self, *names: str) -> None:
        """Raise SettingsError naming the first of ``names`` that is unset."""
        for name in names:
            if is_unset(getattr(self, name)):
                raise SettingsError(f"{name.upper()} is required but not set")

    def require_for(self, process: str) -> None:
        """Raise SettingsError unless everything ``process`` (poll, worker) needs is set."""
        self.require(*REQUIRED[process])
        if process == "worker" and (problem := self.unprotected_pushes()):
            raise SettingsError(problem)

    def pushes_protected(self) -> bool:
        """Whether OMS pushes carry a signature or a bearer token."""
        return not (is_unset(self.oms_signing_secret) and is_unset(self.oms_auth_token))

    def unprotected_pushes(self) -> str | None:
        """Why a worker may not push so (neither signed nor authenticated), or None."""
        if self.pushes_protected() or self.allow_unsigned_oms:
            return None
        return UNPROTECTED_PUSHES

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """What repr() and str() show: URLs with their password masked."""
        for name, value in super().__repr_args__():
            yield name, masked_url(value) if isinstance(value, str) else value

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction in logs and errors."""
        values = [self.bwp_client_secret, self.oms_signing_secret, self.oms_auth_token]
        values.append(self.oms_previous_signing_secret)
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        for url in (self.redis_url, self.broker_url):
            password = urlsplit(url).password
            if password:
                found.append(unquote(password))
        return found


def _http_url(value: str) -> str | None:
    return validate.url_problem(value, validate.HTTP_SCHEMES)


def _credential_url(value: str) -> str | None:
    """A host is required; the scheme is ``_insecure``'s to judge (https unless loopback)."""
    if urlsplit(value).scheme not in validate.HTTP_SCHEMES:
        return None
    return _http_url(value)


def _insecure(url: str | None, *, allowed: bool) -> str | None:
    """Why ``url`` may not carry credentials, or None when it may."""
    if not url or allowed:
        return None
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return None
    if parts.scheme == "http":
        return "http:// sends credentials in clear; use https:// (or ALLOW_INSECURE_HTTP=true)"
    return "must be an https:// URL"


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and ``overrides``).

    Raises SettingsError with one line naming the offending variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a contradiction: its message names the variables
            raise SettingsError(first["msg"].removeprefix("Value error, ")) from None
        name = str(first["loc"][0]).upper()
        raise SettingsError(f"{name}: {first['msg'].removeprefix('Value error, ')}") from None


@cache
def process_settings() -> Settings:
    """This process's settings: read from the environment once, on first use.

    Entry points (the CLI, the Celery app and its signals) call this; everything below
    them receives the object. Raises SettingsError like ``load_settings``.
    """
    return load_settings()


def refuse_to_start(exc: SettingsError) -> NoReturn:
    """The contract's answer to bad configuration: one line naming it, exit code 2."""
    print(f"bwp-worker: configuration error: {exc}", file=sys.stderr)  # noqa: T201
    raise SystemExit(2) from None
