"""The collaborators of a worker process, built once from Settings and closed at exit."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import redis

from config.clients import make_http, make_redis, make_sqs
from config.secrets import Redactor
from config.settings import Settings
from tasks.delivery.sync import SyncDeps
from tasks.http.circuit import CircuitConfig, Circuits
from tasks.keys import Keys
from tasks.ledger.deliveries import DeliveryStates
from tasks.ledger.events import Ledger
from tasks.ledger.keeper import Keeper
from tasks.ledger.milestones import MilestoneGate
from tasks.ledger.trackers import Trackers
from tasks.metrics import TaskMetrics
from tasks.oms.client import OmsClient
from tasks.order_api.client import OrderApi
from tasks.order_api.rate_limit import RateLimiter
from tasks.order_api.token import Credentials, TokenCache
from tasks.order_api.tracker_access import TrackerAccess
from tasks.sqs.dlq import DeadLetters


def milestone_limiter(client: redis.Redis, settings: Settings) -> RateLimiter | None:
    """The milestones' own limiter: MILESTONE_API_SHARE of the API rate and burst (each
    milestone query takes a slot here and one of the shared limiter)."""
    if settings.api_rate_per_second <= 0:
        return None
    share = settings.milestone_api_share
    return RateLimiter(
        client,
        Keys(settings.redis_key_prefix).api_rate_milestones,
        rate=settings.api_rate_per_second * share,
        burst=max(1, int(settings.api_burst * share)),
    )


def make_ledger(client: redis.Redis, settings: Settings) -> Ledger:
    return Ledger(
        client,
        Keys(settings.redis_key_prefix),
        claim_ttl=settings.claim_ttl_seconds,
        queued_ttl=settings.queued_ttl_seconds,
        done_ttl=settings.done_ttl_seconds,
    )


def make_circuits(
    client: redis.Redis, settings: Settings, metrics: TaskMetrics | None = None
) -> Circuits:
    """The shared circuits of the OMS, the order API and the token endpoint."""
    config = CircuitConfig(
        threshold=settings.circuit_threshold,
        probe_interval=settings.circuit_probe_interval_seconds,
    )

    def on_change(dependency: str, opened: bool) -> None:
        if opened and metrics is not None:
            metrics.circuit_openings.labels(dependency).inc()

    return Circuits(client, Keys(settings.redis_key_prefix), config, on_change=on_change)


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    http: httpx.Client
    ledger: Ledger
    tokens: TokenCache
    api: OrderApi
    oms: OmsClient
    deps: SyncDeps
    dead_letters: DeadLetters
    keys: Keys
    #: the process's watchdog: delivery locks and event leases
    keeper: Keeper

    def close(self) -> None:
        self.http.close()
        self.redis.close()


def build_runtime(settings: Settings) -> Runtime:
    """Wire the task side. Raises SettingsError when a variable the tasks need is unset."""
    settings.require_for("worker")
    assert settings.bwp_client_id and settings.bwp_client_secret and settings.oms_url
    keys = Keys(settings.redis_key_prefix)
    client = make_redis(settings.redis_url)
    http = make_http(settings)
    ledger = make_ledger(client, settings)
    keeper = Keeper(
        client, settings.delivery_lock_ttl_seconds, lease_ttl=settings.event_lease_seconds
    )
    metrics = TaskMetrics()
    circuits = make_circuits(client, settings, metrics)
    deliveries = DeliveryStates(
        client,
        keys,
        state_ttl=settings.delivery_state_ttl_seconds,
        done_ttl=settings.done_ttl_seconds,
        lock_ttl=settings.delivery_lock_ttl_seconds,
        lock_wait=settings.delivery_lock_wait_seconds,
        longest_sync=settings.task_deadline_seconds,
        keeper=keeper,
    )
    tokens = TokenCache(
        client,
        keys,
        http,
        Credentials(
            settings.bwp_token_url,
            settings.bwp_client_id,
            settings.bwp_client_secret.get_secret_value(),
        ),
        total_timeout=settings.http_total_timeout_seconds,
        circuits=circuits,
        max_response_bytes=settings.token_max_response_bytes,
    )
    limiter = (
        RateLimiter(
            client, keys.api_rate, rate=settings.api_rate_per_second, burst=settings.api_burst
        )
        if settings.api_rate_per_second > 0
        else None
    )
    api = OrderApi(
        http,
        tokens,
        url=settings.bwp_api_url,
        api_version=settings.bwp_api_version,
        target_id=settings.bwp_target_id,
        attempts=settings.http_max_attempts,
        before_call=limiter.acquire if limiter else lambda: None,
        total_timeout=settings.http_total_timeout_seconds,
        circuits=circuits,
        max_response_bytes=settings.api_max_response_bytes,
    )
    oms = OmsClient(
        http,
        url=settings.oms_url,
        signing_secret=settings.oms_signing_secret.get_secret_value()
        if settings.oms_signing_secret
        else None,
        auth_token=settings.oms_auth_token.get_secret_value() if settings.oms_auth_token else None,
        attempts=settings.http_max_attempts,
        total_timeout=settings.http_total_timeout_seconds,
        circuits=circuits,
        previous_signing_secret=settings.oms_previous_signing_secret.get_secret_value()
        if settings.oms_previous_signing_secret
        else None,
        max_response_bytes=settings.oms_max_response_bytes,
    )
    trackers = Trackers(client, keys, ttl=settings.tracker_ttl_seconds)
    deps = SyncDeps(
        ledger,
        deliveries,
        TrackerAccess(
            api, api_version=settings.bwp_api_version, degraded=metrics.queries_without_tracker
        ),
        oms,
        settings.bwp_api_version,
        trackers=trackers,
        deadline_seconds=settings.task_deadline_seconds,
        metrics=metrics,
        circuits=circuits,
        milestones=MilestoneGate(
            client,
            keys,
            window=settings.milestone_coalesce_seconds,
            limiter=milestone_limiter(client, settings),
        ),
    )
    dead_letters = DeadLetters(
        make_sqs(settings),
        settings.sqs_dlq_url,
        Redactor(settings.secrets()).scrub_text,
        max_bytes=settings.sqs_dlq_max_message_bytes,
    )
    return Runtime(
        settings, client, http, ledger, tokens, api, oms, deps, dead_letters, keys, keeper
    )
