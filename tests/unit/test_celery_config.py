"""The Celery configuration derived from Settings: what the broker is asked to keep."""

from __future__ import annotations

from config.settings import load_settings
from tasks.celery import celery_config


def test_the_redis_broker_keeps_no_unacked_records_unless_asked() -> None:
    # By default the sweep, not kombu's unacked hash, brings back a killed worker's task
    options = celery_config(load_settings())["broker_transport_options"]
    assert options["ack_emulation"] is False
    # An operator can switch kombu's bookkeeping back on; its visibility timeout then applies
    settings = load_settings(broker_ack_emulation=True, broker_visibility_timeout=1200)
    options = celery_config(settings)["broker_transport_options"]
    assert options["ack_emulation"] is True
    assert options["visibility_timeout"] == 1200
