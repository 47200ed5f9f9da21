"""``celery -A bench.celery_events_off worker``: the project's Celery app, task events off.

What ``worker_send_task_events = False`` in tasks/celery_app.py would do. A remote
``disable_events`` cannot stand in for it: a worker started with task events on has no
event groups to drop (Celery answers "already disabled" and keeps sending), whereas a
worker started with them off still lets Flower switch them on (``enable_events``).
"""

from __future__ import annotations

from tasks import app

app.conf.worker_send_task_events = False

__all__ = ["app"]
