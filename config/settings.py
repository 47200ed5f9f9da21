"""The one typed settings object, read from the environment once at an entry point.

Every variable of the contract (shared/contract/README.md) plus the project's tuning
knobs, each with a safe default. Nothing here talks to the network.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Literal, NoReturn
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ApiVersion = Literal["2024-01-01", "2024-04-01", "2024-11-01"]

#: what each process refuses to start without
REQUIRED: dict[str, tuple[str, ...]] = {
    "poll": ("sqs_queue_url",),
    "worker": ("bwp_client_id", "bwp_client_secret", "oms_url"),
}


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
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
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
    delivery_lock_ttl_seconds: float = Field(default=60.0, gt=0)
    delivery_lock_wait_seconds: float = Field(default=5.0, ge=0)
    #: a `queued` ledger record older than this is re-dispatched by the sweep
    sweep_after_seconds: int = Field(default=900, ge=5)
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    broker_visibility_timeout: int = Field(default=900, ge=5)
    #: workers start sending task events (Flower sees every task). Off saves ~1 ms of CPU
    #: per event (docs/performance.md); Flower switches them on when it connects anyway.
    worker_task_events: bool = True
    #: the poller pauses while the Celery queue holds more than this; 0 disables
    max_queue_depth: int = Field(default=2000, ge=0)
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
    #: seconds between the poller's settling ticks (one Redis round trip each)
    settle_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    #: how long a stopping poller waits past its long poll for the receive to return
    shutdown_grace_seconds: float = Field(default=5.0, ge=0, le=25)

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    def require(self, *names: str) -> None:
        """Raise SettingsError naming the first of ``names`` that is unset."""
        for name in names:
            if is_unset(getattr(self, name)):
                raise SettingsError(f"{name.upper()} is required but not set")

    def require_for(self, process: str) -> None:
        """Raise SettingsError unless everything ``process`` (poll, worker) needs is set."""
        self.require(*REQUIRED[process])

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction in logs and errors."""
        values = (self.bwp_client_secret, self.oms_signing_secret, self.oms_auth_token)
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        for url in (self.redis_url, self.broker_url):
            password = urlsplit(url).password
            if password:
                found.append(unquote(password))
        return found


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and ``overrides``).

    Raises SettingsError with one line naming the offending variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(f"{name}: {first['msg']}") from None


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
