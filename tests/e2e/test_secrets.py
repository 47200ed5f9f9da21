"""Secrets never appear in logs, errors, metrics or DLQ attributes (design.md 3.5).

The end-to-end test runs the Procfile's poller and Celery worker with recognisable
secrets, drives traffic through the failures that write the most (an API 503 burst, a
permanent OMS refusal, revoked tokens, a malformed body), then searches every process log,
every DLQ message and the poller's /metrics for the secrets and for every access token
the sandbox issued. The other tests look at the objects that carry secrets in-process:
the settings, the runtime, the token cache's errors, the OMS client's errors.
"""

from __future__ import annotations

import base64
import json
import socket
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from config.settings import Settings, SettingsError, load_settings
from sandbox.bwp_api import SandboxApi
from sandbox.oms import SandboxOms
from sandbox.stack import LocalStack, StackOptions
from tasks.errors import BwpError, PermanentOmsError
from tasks.keys import Keys
from tasks.oms.client import OmsClient
from tasks.order_api.token import Credentials, TokenCache
from tasks.runtime import build_runtime
from tests.e2e.checks import pushes
from tests.e2e.conftest import new_order_id

# Letters, digits and dashes only: the same in JSON, in a URL-encoded form and in a log.
CLIENT_ID = "secrets-test-client"
CLIENT_SECRET = "cs-7Q2XK9-never-log-this-client-secret"
SIGNING_SECRET = "hmac-4VN8RD-never-log-this-signing-key"
OMS_TOKEN = "oms-3JW6PT-never-log-this-bearer-token"
SECRETS = (CLIENT_SECRET, SIGNING_SECRET, OMS_TOKEN)


def leaks(text: str, secrets: tuple[str, ...] | list[str]) -> list[str]:
    """The secrets that ``text`` shows, in clear or in an HTTP Basic header."""
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return [secret for secret in [*secrets, basic] if secret in text]


# --- in-process: the objects that hold secrets ------------------------------------------------


def settings_with_secrets(**more: Any) -> Settings:
    return Settings(
        bwp_client_id=CLIENT_ID,
        bwp_client_secret=SecretStr(CLIENT_SECRET),
        oms_signing_secret=SecretStr(SIGNING_SECRET),
        oms_auth_token=SecretStr(OMS_TOKEN),
        oms_url="http://127.0.0.1:1/deliveries",
        **more,
    )


def test_settings_never_show_their_secrets() -> None:
    # Given settings holding all three secrets
    settings = settings_with_secrets()
    # Then neither repr, str, a dump nor a JSON dump shows them
    for shown in (
        repr(settings),
        str(settings),
        f"{settings!r}",
        str(settings.model_dump()),
        settings.model_dump_json(),
    ):
        assert leaks(shown, SECRETS) == []
    # And the secrets are there for the code that needs them
    assert sorted(settings.secrets()) == sorted(SECRETS)


def test_a_settings_error_never_shows_a_secret() -> None:
    # Given the secrets set and another variable invalid
    with pytest.raises(SettingsError) as caught:
        load_settings(
            bwp_client_secret=CLIENT_SECRET, oms_auth_token=OMS_TOKEN, metrics_port="not-a-port"
        )
    # Then the error and everything chained to it name the variable, not the secrets
    assert "METRICS_PORT" in str(caught.value)
    assert leaks("".join(traceback.format_exception(caught.value)), SECRETS) == []


def test_the_task_runtime_never_shows_a_secret(redis_url: str) -> None:
    # Given the task side wired from settings that hold the secrets
    runtime = build_runtime(settings_with_secrets(redis_url=redis_url))
    try:
        # Then its repr (say, logged by accident) shows none of them
        assert leaks(repr(runtime), SECRETS) == []
        assert leaks(repr(runtime.tokens) + repr(runtime.oms) + repr(runtime.api), SECRETS) == []
    finally:
        runtime.close()


def echo_request(
    status: int, *, json_body: bool = False
) -> Callable[[httpx.Request], httpx.Response]:
    """A token endpoint that answers ``status`` and echoes the form it was sent."""

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = request.content.decode()  # client_id=...&client_secret=...
        if json_body:
            return httpx.Response(status, json={"error": "invalid_request", "request": echoed})
        return httpx.Response(status, text=echoed)

    return handler


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def token_cache_with(
    redis_client: redis.Redis, key_prefix: str
) -> Iterator[Callable[[Callable[[httpx.Request], httpx.Response]], TokenCache]]:
    clients: list[httpx.Client] = []

    def build(handler: Callable[[httpx.Request], httpx.Response]) -> TokenCache:
        http = httpx.Client(transport=httpx.MockTransport(handler))
        clients.append(http)
        credentials = Credentials("http://token.test/token", CLIENT_ID, CLIENT_SECRET)
        return TokenCache(redis_client, Keys(key_prefix), http, credentials, wait=0.5)

    yield build
    for http in clients:
        http.close()


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(echo_request(401), id="401-refused"),
        pytest.param(echo_request(400, json_body=True), id="400-refused-json"),
        pytest.param(echo_request(429), id="429-throttled"),
        pytest.param(echo_request(503), id="503-unavailable"),
        pytest.param(echo_request(200), id="200-not-json"),
        pytest.param(echo_request(200, json_body=True), id="200-without-token"),
        pytest.param(refuse_connection, id="connection-refused"),
    ],
)
def test_token_cache_errors_never_carry_the_client_secret(
    token_cache_with: Callable[[Callable[[httpx.Request], httpx.Response]], TokenCache],
    handler: Callable[[httpx.Request], httpx.Response],
) -> None:
    # Given a token endpoint that fails and echoes the request (client secret included)
    cache = token_cache_with(handler)
    # When a token is asked for
    with pytest.raises(BwpError) as caught:
        cache.get()
    # Then neither the error, its repr, nor the traceback with its causes shows the secret
    error = caught.value
    shown = [str(error), repr(error), "".join(traceback.format_exception(error))]
    assert [leaks(text, SECRETS) for text in shown] == [[], [], []]
    assert leaks(repr(Credentials("u", CLIENT_ID, CLIENT_SECRET)), SECRETS) == []


def test_an_oms_refusal_that_echoes_the_request_does_not_leak_the_token() -> None:
    # Given an OMS that refuses with 400 and quotes the Authorization header it was sent
    def handler(request: httpx.Request) -> httpx.Response:
        quoted = request.headers["authorization"]
        return httpx.Response(400, json={"error": f"unexpected Authorization: {quoted}"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        oms = OmsClient(
            http,
            url="http://oms.test/deliveries",
            signing_secret=SIGNING_SECRET,
            auth_token=OMS_TOKEN,
            attempts=1,
        )
        # When a delivery update is pushed
        with pytest.raises(PermanentOmsError) as caught:
            oms.push({"idempotencyKey": "key-1", "orderId": "322-A"})
    # Then the permanent error (the DLQ reason) does not carry the bearer token
    assert leaks(str(caught.value), SECRETS) == []


# --- end to end: real processes -----------------------------------------------------------------


class RecordingApi(SandboxApi):
    """The sandbox API, remembering every access token it issues."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.issued: list[str] = []

    def issue_token(self, client_id: str, client_secret: str) -> str | None:
        token = super().issue_token(client_id, client_secret)
        if token is not None:
            self.issued.append(token)
        return token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dlq_messages(stack: LocalStack) -> list[dict[str, Any]]:
    messages: list[Any] = []
    while reply := stack.sqs.receive_message(
        QueueUrl=stack.dlq_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=600,
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        messages += reply
    return messages


def order_in_transit(stack: LocalStack) -> str:
    order_id = new_order_id("322-SECRET")
    stack.api.store.add_order(order_id, "bp-secret", [("li-1", 1, "d-1")])
    stack.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT", tracking_number="TN1")
    stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id, "d-1")
    return order_id


def dlq_depth(stack: LocalStack) -> int:
    return stack.queue_counts(stack.dlq_url)[0]


@pytest.mark.e2e
def test_secrets_never_reach_logs_dlq_or_metrics(redis_url: str) -> None:
    # Given the poller and a worker running with recognisable secrets, logging everything
    api = RecordingApi(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    oms = SandboxOms(signing_secret=SIGNING_SECRET, auth_token=OMS_TOKEN)
    port = free_port()
    options = StackOptions(redis_url=redis_url, extra_env={"LOG_LEVEL": "DEBUG"})
    with LocalStack(options, api=api, oms=oms) as stack:
        stack.start_poller(METRICS_PORT=str(port))
        stack.start_worker()

        # When a delivery goes through (the first token is issued and used)
        first = order_in_transit(stack)
        stack.wait_until(lambda: len(pushes(stack, first)) == 1, what="the first push")
        # And the API answers a burst of 503s, retried in the call and then by Celery
        api.inject("http503", count=4)
        burst = order_in_transit(stack)
        stack.wait_until(lambda: len(pushes(stack, burst)) == 1, what="a push after 503s")
        # And the OMS refuses one push for good: the event is parked
        oms.fail_next(1, status=422)
        order_in_transit(stack)
        stack.wait_until(lambda: dlq_depth(stack) == 1, what="the refused event parked")
        # And every token is revoked: a 401, one refresh, a new token
        api.invalidate_tokens()
        revoked = order_in_transit(stack)
        stack.wait_until(lambda: len(pushes(stack, revoked)) == 1, what="a push after a 401")
        # And a body that is not an event arrives
        stack.send("not an event")
        stack.wait_until(lambda: dlq_depth(stack) == 2, what="the malformed body parked")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for process in stack.processes:
            process.stop()
        logs = {process.log_path.name: process.log_path.read_text() for process in stack.processes}
        parked = dlq_messages(stack)

    # Then the traffic really used the secrets and went through every failure
    assert len(api.issued) >= 2, "the revoked token was not replaced"
    assert {push.headers["authorization"] for push in oms.received} == {f"Bearer {OMS_TOKEN}"}
    assert api.stats()["faults_pending"] == 0
    everything = "\n".join(logs.values())
    for line in ("sync_retry_scheduled", "event_parked", "message_malformed"):
        assert line in everything, f"no {line} line: the failure path did not run"
    assert sorted(
        message["MessageAttributes"]["bwp-error-kind"]["StringValue"] for message in parked
    ) == ["malformed", "permanent-oms-error"]
    assert "bwp_messages_parked_total" in metrics
    # And no secret and no access token appears in any log, DLQ message or metric
    secrets = [*SECRETS, *api.issued]
    for name, text in logs.items():
        assert leaks(text, secrets) == [], f"{name} shows a secret"
    for message in parked:
        shown = message["Body"] + json.dumps(message["MessageAttributes"])
        assert leaks(shown, secrets) == [], "a DLQ message shows a secret"
    assert leaks(metrics, secrets) == []
