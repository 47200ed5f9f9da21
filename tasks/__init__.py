"""The domain and the Celery side of bwp-worker, in families (design.md section 2).

``import tasks`` starts nothing: the Celery app lives in ``tasks.celery`` (which
``celery -A tasks`` finds) and is built on first access.
"""
