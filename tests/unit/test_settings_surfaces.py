"""config.settings on exposed surfaces: a Redis password never crosses the network in
clear nor shows in a repr, and a worker never pushes unsigned and unauthenticated by
accident."""

from __future__ import annotations

import pytest

from config.settings import Settings, SettingsError, load_settings

PASSWORD = "redis-pw-K4V9-never-shown"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No variable the settings read leaks in from the machine running the tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- Redis URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("REDIS_URL", f"redis://:{PASSWORD}@redis.invalid:6379/0"),
        ("REDIS_URL", f"redis://bwp-worker:{PASSWORD}@redis.invalid/0"),  # an ACL user
        ("CELERY_BROKER_URL", f"redis://:{PASSWORD}@broker.invalid:6379/1"),
    ],
)
def test_a_password_over_plain_redis_off_loopback_is_refused(
    clean_env: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    # Given a password-bearing redis:// URL to a host off loopback
    clean_env.setenv(variable, url)
    # When the settings are loaded
    with pytest.raises(SettingsError) as caught:
        load_settings()
    # Then one line names the variable and the way out, and never shows the password
    message = str(caught.value)
    assert message.startswith(f"{variable}: redis:// sends its password")
    assert "rediss://" in message and "ALLOW_INSECURE_REDIS=true" in message
    assert PASSWORD not in message and "\n" not in message


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_URL": f"rediss://:{PASSWORD}@redis.invalid:6380/0"},
        {"REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:6379/0"},
        {"REDIS_URL": f"redis://:{PASSWORD}@localhost/0"},
        {"REDIS_URL": f"redis://:{PASSWORD}@[::1]:6379/0"},
        {"REDIS_URL": "redis://redis.invalid:6379/0"},  # nothing secret travels
        {"REDIS_URL": "redis://bwp-worker@redis.invalid:6379/0"},
        {"REDIS_URL": f"unix://:{PASSWORD}@/run/redis.sock"},
        {"REDIS_URL": f"redis://:{PASSWORD}@redis.invalid/0", "ALLOW_INSECURE_REDIS": "true"},
        {"CELERY_BROKER_URL": f"rediss://:{PASSWORD}@broker.invalid:6380/1"},
    ],
)
def test_other_redis_urls_load(clean_env: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    load_settings()


def test_repr_and_str_never_show_a_redis_password(clean_env: pytest.MonkeyPatch) -> None:
    # Given Redis and the broker reached with passwords
    clean_env.setenv("REDIS_URL", f"rediss://:{PASSWORD}@redis.invalid:6380/0")
    clean_env.setenv("CELERY_BROKER_URL", f"rediss://celery:{PASSWORD}-2@broker.invalid/1")
    settings = load_settings()
    # Then neither repr nor str shows them, masked as kombu masks a broker URL
    for shown in (repr(settings), str(settings)):
        assert PASSWORD not in shown
        assert "redis_url='rediss://:**@redis.invalid:6380/0'" in shown
        assert "celery_broker_url='rediss://celery:**@broker.invalid/1'" in shown
    # while the code that connects still has them
    assert settings.redis_url == f"rediss://:{PASSWORD}@redis.invalid:6380/0"
    assert PASSWORD in settings.secrets() and f"{PASSWORD}-2" in settings.secrets()


# --- OMS pushes --------------------------------------------------------------------------

WORKER = {"BWP_CLIENT_ID": "id", "BWP_CLIENT_SECRET": "secret", "OMS_URL": "https://oms.invalid"}


def worker_settings(clean_env: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in {**WORKER, **env}.items():
        clean_env.setenv(name, value)
    return load_settings()


def test_a_worker_whose_pushes_are_neither_signed_nor_authenticated_is_refused(
    clean_env: pytest.MonkeyPatch,
) -> None:
    settings = worker_settings(clean_env, OMS_SIGNING_SECRET="", OMS_AUTH_TOKEN="")
    with pytest.raises(SettingsError) as caught:
        settings.require_for("worker")
    assert str(caught.value) == (
        "OMS_SIGNING_SECRET or OMS_AUTH_TOKEN is required: pushes would be neither signed"
        " nor authenticated (ALLOW_UNSIGNED_OMS=true allows it)"
    )
    # a poller pushes nothing: it does not care
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/bwp-events"
    worker_settings(clean_env, SQS_QUEUE_URL=queue).require_for("poll")


@pytest.mark.parametrize(
    "env",
    [
        {"OMS_SIGNING_SECRET": "signing"},
        {"OMS_AUTH_TOKEN": "token"},
        {"OMS_SIGNING_SECRET": "signing", "OMS_AUTH_TOKEN": "token"},
        {"ALLOW_UNSIGNED_OMS": "true"},
    ],
)
def test_a_worker_with_a_signature_a_token_or_the_explicit_allowance_starts(
    clean_env: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    worker_settings(clean_env, **env).require_for("worker")


def test_a_previous_signing_secret_needs_a_current_one(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OMS_PREVIOUS_SIGNING_SECRET", "old-signing-secret")
    with pytest.raises(SettingsError, match=r"^OMS_PREVIOUS_SIGNING_SECRET is set without"):
        load_settings()


def test_the_previous_signing_secret_is_a_secret(clean_env: pytest.MonkeyPatch) -> None:
    settings = worker_settings(
        clean_env, OMS_SIGNING_SECRET="new-signing-secret", OMS_PREVIOUS_SIGNING_SECRET="old-one"
    )
    assert "old-one" in settings.secrets()
    assert "old-one" not in repr(settings) + str(settings)
