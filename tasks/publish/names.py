"""The Celery task names: what the publishers, beat's schedule and the workers'
registrations agree on. A leaf: tasks/celery.py (routes, schedule) and tasks/jobs.py
(registrations) both read it, neither imports the other for it."""

from __future__ import annotations

from typing import Final

SYNC_TASK: Final = "bwp.sync_delivery"
SWEEP_TASK: Final = "bwp.sweep_stale_events"
RECONCILE_TASK: Final = "bwp.reconcile_open_deliveries"
