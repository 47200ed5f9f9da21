"""A task's way to the broker: the task names, the sync task's call (pure), its message
built by Celery's and kombu's own code. tasks/dispatch.py publishes with them."""
