"""Settings for the test suite.

With DATABASE_URL and REDIS_URL set (CI), tests run on PostgreSQL and Redis;
without them, on SQLite and fakeredis, and tests that need real worker
processes or PostgreSQL row locks are skipped (see conftest.py).
"""

import os
from typing import Any

import dj_database_url

SECRET_KEY = "envoy-django-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "django_tasks_db",  # the Django Tasks database backend, for ENVOY["EXECUTION"] = "tasks"
    "envoy_django",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DATABASE_URL = os.environ.get("DATABASE_URL")
REDIS_URL = os.environ.get("REDIS_URL")

if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    # Worker processes started by a test connect to the test database by name.
    if os.environ.get("ENVOY_TEST_DB_NAME"):
        DATABASES["default"]["NAME"] = os.environ["ENVOY_TEST_DB_NAME"]
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

if REDIS_URL:
    RQ_QUEUES = {
        "envoy": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": -1},
        "envoy-priority": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": -1},  # for flows registered with queue=
    }
    CACHES: dict[str, dict[str, Any]] = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        # Shared by the test and its worker processes (rate limits), in the tests' Redis database.
        "envoy-redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL},
    }
else:
    import fakeredis

    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "envoy-redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/0",
            # The connection class, not only the client, must be fake: with a real
            # connection pool, a fake client still talks to a real Redis if one runs.
            "OPTIONS": {
                "REDIS_CLIENT_CLASS": "fakeredis.FakeStrictRedis",
                "CONNECTION_POOL_KWARGS": {"connection_class": fakeredis.FakeRedisConnection},
            },
        },
    }
    RQ_QUEUES = {"envoy": {"USE_REDIS_CACHE": "envoy-redis"}, "envoy-priority": {"USE_REDIS_CACHE": "envoy-redis"}}

# Worker processes started by tests (envoy_worker, and django-tasks-db's db_worker in "tasks" mode)
# read their TASKS and ENVOY settings from these. "envoy" runs the plain @task functions of
# tests/testapp/tasks.py as envoy jobs, its "envoy-priority" queue on the django-rq queue of that name.
TASKS: dict[str, dict[str, Any]] = {
    "envoy": {"BACKEND": "envoy_django.tasks.EnvoyBackend", "QUEUES": ["default", "envoy-priority"]},
}
if os.environ.get("ENVOY_TEST_EXECUTION") == "tasks":
    TASKS["default"] = {"BACKEND": "django_tasks_db.DatabaseBackend"}

ENVOY = {
    "EXECUTION": os.environ.get("ENVOY_TEST_EXECUTION", "immediate"),
    "RETRY_BACKOFF": 0.01,
    "RETRY_BACKOFF_MAX": 0.05,
    "LEASE_SECONDS": float(os.environ.get("ENVOY_TEST_LEASE_SECONDS", 30)),
    "SWEEP_INTERVAL": float(os.environ.get("ENVOY_TEST_SWEEP_INTERVAL", 10)),
    "MAX_CLAIMS": int(os.environ.get("ENVOY_TEST_MAX_CLAIMS", 10)),
    # The flow "rate_limited" takes its calls from this limit, counted where every worker sees it.
    "RATE_LIMITS": {"test-api": "3/2s"},
    "RATE_LIMIT_CACHE": "envoy-redis",
    # Counted in every test process and worker: with PROMETHEUS_MULTIPROC_DIR set, into files summed by metrics/.
    "METRICS": True,
    "METRICS_TOKEN": "test-metrics-token-0123456789",
}
