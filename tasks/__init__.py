"""The domain and the Celery side of bwp-worker. ``celery -A tasks worker`` finds ``app``.

The app's configuration is read lazily from the environment (tasks.celery_app).
"""

from tasks.celery_app import make_app
from tasks.jobs import register

app = make_app()
register(app)

__all__ = ["app"]
