"""Django settings for the chaos harness and the ``envoy_worker`` processes it starts.

Everything comes from the environment, which ``chaos/run.py`` sets for itself
and for its worker processes: its own database and its own Redis server.
"""

import os

import dj_database_url

SECRET_KEY = "envoy-django-chaos"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_rq",
    "envoy_django",
    "chaos",
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("ENVOY_CHAOS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/envoy_chaos")
    )
}
RQ_QUEUES = {
    "envoy": {"URL": os.environ.get("ENVOY_CHAOS_REDIS_URL", "redis://127.0.0.1:6379/0"), "DEFAULT_TIMEOUT": -1},
}

ENVOY = {
    "EXECUTION": os.environ.get("ENVOY_CHAOS_EXECUTION", "rq"),
    "LEASE_SECONDS": float(os.environ.get("ENVOY_CHAOS_LEASE_SECONDS", 2)),
    "SWEEP_INTERVAL": float(os.environ.get("ENVOY_CHAOS_SWEEP_INTERVAL", 0.5)),
    # Injected handler failures are retried; a generous budget keeps them from failing a job.
    "MAX_RETRIES": 25,
    "RETRY_BACKOFF": float(os.environ.get("ENVOY_CHAOS_RETRY_BACKOFF", 0.2)),
    "RETRY_BACKOFF_MAX": 1.0,
}
