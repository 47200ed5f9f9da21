"""config.settings: one typed settings object read from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No variable the settings read leaks in from the machine running the tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- defaults (contract: "Configuration") ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "default"),
    [
        ("sqs_queue_url", None),
        ("sqs_dlq_url", None),
        ("aws_region", "us-east-1"),
        ("aws_endpoint_url", None),
        ("redis_url", "redis://localhost:6379/0"),
        ("celery_broker_url", None),
        ("bwp_api_url", "https://api.buywithprime.amazon.com/graphql"),
        ("bwp_token_url", "https://api.buywithprime.amazon.com/token"),
        ("bwp_client_id", None),
        ("bwp_client_secret", None),
        ("bwp_api_version", "2024-11-01"),
        ("bwp_target_id", None),
        ("oms_url", None),
        ("oms_signing_secret", None),
        ("oms_auth_token", None),
        ("log_level", "INFO"),
        ("log_format", "json"),
        ("metrics_port", 9102),
    ],
)
def test_contract_variables_have_their_documented_defaults(field: str, default: object) -> None:
    # Given an empty environment
    # When the settings are loaded
    settings = load_settings()
    # Then each variable of the contract table has its documented default
    assert getattr(settings, field) == default


def test_broker_url_falls_back_to_redis_url(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REDIS_URL", "rediss://cache.example:6380/2")
    assert load_settings().broker_url == "rediss://cache.example:6380/2"


def test_broker_url_is_its_own_when_set(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REDIS_URL", "redis://data:6379/0")
    clean_env.setenv("CELERY_BROKER_URL", "redis://broker:6379/1")
    settings = load_settings()
    assert settings.broker_url == "redis://broker:6379/1"
    assert settings.redis_url == "redis://data:6379/0"


def test_empty_environment_has_no_secrets() -> None:
    assert load_settings().secrets() == []


# --- reading the environment ---------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("SQS_QUEUE_URL", "http://sqs.local/1/q", "sqs_queue_url", "http://sqs.local/1/q"),
        ("AWS_REGION", "eu-west-1", "aws_region", "eu-west-1"),
        ("BWP_API_VERSION", "2024-01-01", "bwp_api_version", "2024-01-01"),
        ("BWP_API_VERSION", "2024-04-01", "bwp_api_version", "2024-04-01"),
        ("BWP_TARGET_ID", "bp-123", "bwp_target_id", "bp-123"),
        ("LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
        ("LOG_FORMAT", "console", "log_format", "console"),
        ("METRICS_PORT", "0", "metrics_port", 0),
        ("METRICS_PORT", "65535", "metrics_port", 65535),
        ("UNSUPPORTED_EVENTS", "park", "unsupported_events", "park"),
        ("HTTP_TIMEOUT_SECONDS", "2.5", "http_timeout_seconds", 2.5),
        ("TASK_MAX_RETRIES", "0", "task_max_retries", 0),
        ("REDIS_KEY_PREFIX", "shop1:", "redis_key_prefix", "shop1:"),
        ("metrics_port", "9200", "metrics_port", 9200),  # names are case-insensitive
    ],
)
def test_variables_are_read_and_typed(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    clean_env.setenv(variable, value)
    assert getattr(load_settings(), field) == expected


def test_overrides_win_over_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("METRICS_PORT", "9200")
    assert load_settings(metrics_port=0).metrics_port == 0


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.metrics_port = 1  # type: ignore[misc]


# --- invalid values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("METRICS_PORT", "abc"),
        ("METRICS_PORT", "70000"),
        ("METRICS_PORT", "-1"),
        ("METRICS_PORT", ""),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "verbose"),
        ("BWP_API_VERSION", "2023-01-01"),
        ("UNSUPPORTED_EVENTS", "drop"),
        ("SQS_WAIT_TIME_SECONDS", "21"),
        ("HTTP_TIMEOUT_SECONDS", "0"),
        ("HTTP_MAX_ATTEMPTS", "0"),
        ("TASK_MAX_RETRIES", "many"),
        ("REDIS_KEY_PREFIX", ""),
    ],
)
def test_invalid_value_is_a_one_line_error_naming_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # Given one variable set to a value it cannot take
    clean_env.setenv(variable, value)
    # When the settings are loaded
    with pytest.raises(SettingsError) as caught:
        load_settings()
    # Then the error is one line that starts with the variable's name
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    # and no pydantic traceback context is chained onto it
    assert caught.value.__suppress_context__


def test_invalid_value_is_not_echoed(clean_env: pytest.MonkeyPatch) -> None:
    # A mistyped variable may hold a secret pasted into the wrong place.
    clean_env.setenv("LOG_FORMAT", "sk-live-ZZZZ-very-secret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "very-secret" not in str(caught.value)


def test_invalid_override_names_the_field() -> None:
    with pytest.raises(SettingsError, match=r"^METRICS_PORT: "):
        load_settings(metrics_port="not a port")


# --- require -------------------------------------------------------------------------


def test_require_passes_when_every_name_is_set(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OMS_URL", "https://oms.example/updates")
    clean_env.setenv("BWP_CLIENT_ID", "client")
    load_settings().require("oms_url", "bwp_client_id")


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_require_names_the_first_missing_variable(
    clean_env: pytest.MonkeyPatch, value: str | None
) -> None:
    # Given OMS_URL is set but BWP_CLIENT_ID and SQS_QUEUE_URL are not
    clean_env.setenv("OMS_URL", "https://oms.example/updates")
    if value is not None:
        clean_env.setenv("BWP_CLIENT_ID", value)
    # When they are required
    with pytest.raises(SettingsError) as caught:
        load_settings().require("oms_url", "bwp_client_id", "sqs_queue_url")
    # Then the first missing one is named, as a variable
    assert str(caught.value) == "BWP_CLIENT_ID is required but not set"


def test_require_sees_an_unset_secret() -> None:
    with pytest.raises(SettingsError, match="BWP_CLIENT_SECRET"):
        load_settings().require("bwp_client_secret")


# --- secrets -------------------------------------------------------------------------

SECRETS = {
    "BWP_CLIENT_SECRET": "client-secret-value-1",
    "OMS_SIGNING_SECRET": "signing-secret-value-2",
    "OMS_AUTH_TOKEN": "auth-token-value-3",
}


def test_secrets_are_listed_for_redaction(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        clean_env.setenv(name, value)
    assert sorted(load_settings().secrets()) == sorted(SECRETS.values())


def test_empty_secret_is_not_listed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OMS_AUTH_TOKEN", "")
    clean_env.setenv("OMS_SIGNING_SECRET", "signing-secret-value-2")
    assert load_settings().secrets() == ["signing-secret-value-2"]


def test_secrets_never_appear_in_repr_or_str(clean_env: pytest.MonkeyPatch) -> None:
    # Given every secret configured
    for name, value in SECRETS.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    # Then neither repr, str nor a dump shows them
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    for value in SECRETS.values():
        assert value not in shown
    # while the values themselves are there for the code that needs them
    assert settings.oms_signing_secret is not None
    assert settings.oms_signing_secret.get_secret_value() == SECRETS["OMS_SIGNING_SECRET"]


# --- settings that contradict each other (issue #11) ---------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"CLAIM_TTL_SECONDS": "60", "SQS_VISIBILITY_TIMEOUT": "60"},
            "CLAIM_TTL_SECONDS (60) must be below SQS_VISIBILITY_TIMEOUT (60)",
        ),
        (
            {
                "TASK_RETRY_CAP_SECONDS": "900",
                "BROKER_VISIBILITY_TIMEOUT": "600",
                "BROKER_ACK_EMULATION": "true",
            },
            "TASK_RETRY_CAP_SECONDS (900) must be below BROKER_VISIBILITY_TIMEOUT (600)",
        ),
        (
            {
                "TASK_DEADLINE_SECONDS": "400",
                "BROKER_VISIBILITY_TIMEOUT": "400",
                "BROKER_ACK_EMULATION": "true",
            },
            "TASK_DEADLINE_SECONDS (400) must be below BROKER_VISIBILITY_TIMEOUT (400)",
        ),
        (
            {"HTTP_TOTAL_TIMEOUT_SECONDS": "200", "TASK_DEADLINE_SECONDS": "100"},
            "HTTP_TOTAL_TIMEOUT_SECONDS (200) must not exceed TASK_DEADLINE_SECONDS (100)",
        ),
        (
            {"HTTP_TIMEOUT_SECONDS": "40", "HTTP_TOTAL_TIMEOUT_SECONDS": "20"},
            "HTTP_TIMEOUT_SECONDS (40) must not exceed HTTP_TOTAL_TIMEOUT_SECONDS (20)",
        ),
        (
            {"DELIVERY_LOCK_WAIT_SECONDS": "50", "TASK_DEADLINE_SECONDS": "40"},
            "DELIVERY_LOCK_WAIT_SECONDS (50) must not exceed TASK_DEADLINE_SECONDS (40)",
        ),
        ({"OMS_URL": "http://oms.example/updates"}, "OMS_URL: http:// sends credentials"),
        ({"BWP_TOKEN_URL": "http://auth.example/token"}, "BWP_TOKEN_URL: http:// sends"),
        ({"BWP_API_URL": "http://api.example/graphql"}, "BWP_API_URL: http:// sends"),
        ({"OMS_URL": "ftp://oms.example/x"}, "OMS_URL: must be an https:// URL"),
    ],
)
def test_contradicting_settings_are_refused_in_one_line_naming_them(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    # Given settings that cannot both hold
    for name, value in env.items():
        clean_env.setenv(name, value)
    # When they are loaded
    with pytest.raises(SettingsError) as caught:
        load_settings()
    # Then one line names the variables involved
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


@pytest.mark.parametrize(
    "env",
    [
        {"OMS_URL": "http://127.0.0.1:8080/deliveries"},
        {"OMS_URL": "http://localhost/deliveries", "BWP_TOKEN_URL": "http://[::1]:9000/token"},
        {"OMS_URL": "http://oms.internal/updates", "ALLOW_INSECURE_HTTP": "true"},
        {"CLAIM_TTL_SECONDS": "5", "SQS_VISIBILITY_TIMEOUT": "10"},
        # without kombu's ack emulation its visibility timeout bounds nothing
        {"TASK_DEADLINE_SECONDS": "400", "BROKER_VISIBILITY_TIMEOUT": "400"},
    ],
)
def test_consistent_settings_load(clean_env: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    load_settings()


def test_the_defaults_hold_together() -> None:
    assert load_settings().contradictions() == []


# --- URLs, regions and queues (issue 21): refused at start, one line each -------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL: must start with redis://"),
        ({"REDIS_URL": "redis://cache:port/0"}, "REDIS_URL: is not a valid URL"),
        ({"REDIS_URL": "redis://cache:6379/zero"}, "REDIS_URL: its path must be a database"),
        ({"REDIS_URL": ""}, "REDIS_URL: must be a URL"),
        ({"CELERY_BROKER_URL": "cache:6379"}, "CELERY_BROKER_URL: must be a broker URL"),
        ({"AWS_REGION": "us east 1"}, "AWS_REGION: 'us east 1' is not an AWS region"),
        ({"AWS_REGION": "US-EAST-1"}, "AWS_REGION: 'US-EAST-1' is not an AWS region"),
        ({"AWS_ENDPOINT_URL": "localhost:4566"}, "AWS_ENDPOINT_URL: must start with http"),
        ({"SQS_QUEUE_URL": "not-a-url"}, "SQS_QUEUE_URL: must start with http"),
        ({"SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/q"}, "SQS_QUEUE_URL: is not a"),
        (
            {"SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1234/bwp-events"},
            "SQS_QUEUE_URL: names no 12-digit account id",
        ),
        (
            {"SQS_QUEUE_URL": "http://sqs.us-east-1.amazonaws.com/123456789012/bwp-events"},
            "SQS_QUEUE_URL: must use https://",
        ),
        (
            {"SQS_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bwp events"},
            "SQS_DLQ_URL: must be a URL without spaces",
        ),
        (
            {"SQS_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bwp.events"},
            "SQS_DLQ_URL: ends in an invalid queue name",
        ),
        (
            {"SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/bwp-events"},
            "SQS_QUEUE_URL names a queue in eu-west-1 but AWS_REGION is us-east-1",
        ),
        ({"OMS_URL": "https:///deliveries"}, "OMS_URL: names no host"),
        ({"BWP_API_URL": "api.example/graphql"}, "BWP_API_URL: must be an https:// URL"),
        ({"HTTPS_PROXY": "proxy.invalid:3128"}, "HTTPS_PROXY: must start with http"),
        ({"http_proxy": "socks5://proxy.invalid:1080"}, "HTTP_PROXY: must start with http"),
    ],
)
def test_a_malformed_url_region_or_queue_is_refused_naming_it(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(expected), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_malformed_redis_url_is_named_without_its_password(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("REDIS_URL", "redis://:hunter2-secret@cache:63x9/0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "REDIS_URL" in str(caught.value)
    assert "hunter2-secret" not in str(caught.value)


@pytest.mark.parametrize(
    "env",
    [
        {"SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bwp-events"},
        {"SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bwp-events.fifo"},
        {"SQS_QUEUE_URL": "https://queue.amazonaws.com/123456789012/bwp-events"},
        {
            "SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/bwp-events",
            "AWS_REGION": "eu-west-1",
        },
        {
            # an emulator: the endpoint decides, the host's region is not AWS's
            "SQS_QUEUE_URL": "http://sqs.eu-west-1.localhost.localstack.cloud:4566/000000000000/q",
            "AWS_ENDPOINT_URL": "http://localhost:4566",
        },
        {"SQS_QUEUE_URL": "http://127.0.0.1:5000/123456789012/bwp-1234"},
        {"SQS_DLQ_URL": ""},
        {"AWS_REGION": "us-gov-west-1"},
        {"AWS_REGION": "cn-north-1"},
        {"REDIS_URL": "rediss://:tok@cache.example:6380/2?ssl_ca_certs=/ca.pem"},
        {"REDIS_URL": "unix:///var/run/redis.sock"},
        {"CELERY_BROKER_URL": "amqp://guest:guest@rabbit:5672//"},
        {"HTTPS_PROXY": "http://proxy.invalid:3128", "NO_PROXY": ".internal,169.254.169.254"},
    ],
)
def test_well_formed_urls_regions_and_queues_are_accepted(
    clean_env: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    load_settings()
