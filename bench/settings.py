"""Django settings for the benchmarks (``make bench``).

PostgreSQL and Redis come from DATABASE_URL and REDIS_URL, but the bench
uses its own database and Redis DB number so it never touches anyone else's:

- ENVOY_BENCH_DB (default ``envoy_bench``): the database name (run.py
  creates, migrates and empties it; the scale dataset lives in
  ``<name>_scale``, kept between runs);
- ENVOY_BENCH_REDIS_DB (default 5): the Redis DB number (flushed by run.py
  with FLUSHDB, never FLUSHALL).
- ENVOY_BENCH_PREPARED=0: the engine's statements not prepared
  (``ENVOY["PREPARED_STATEMENTS"] = False``), to compare with the default.

Worker processes started by run.py read these same settings.
"""

import os
from urllib.parse import urlsplit, urlunsplit

import dj_database_url

SECRET_KEY = "envoy-django-bench"
DEBUG = False  # no query log growing in long runs
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "bench.urls"
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
    "envoy_django",
    "bench",  # bench/flows.py is autodiscovered like any app's flows.py
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


def bench_db_name() -> str:
    return os.environ.get("ENVOY_BENCH_DB", "envoy_bench")


def bench_redis_url() -> str:
    """REDIS_URL with its DB number replaced by ENVOY_BENCH_REDIS_DB."""
    parts = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return urlunsplit((parts.scheme, parts.netloc, "/" + os.environ.get("ENVOY_BENCH_REDIS_DB", "5"), "", ""))


# CONN_MAX_AGE: how long a worker keeps its PostgreSQL connection between
# RQ jobs. Django's default (0) closes it after every job, as after every
# request; ENVOY_BENCH_CONN_MAX_AGE=0 measures that configuration.
_max_age = os.environ.get("ENVOY_BENCH_CONN_MAX_AGE", "600")
DATABASES = {
    "default": {
        **dj_database_url.parse(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"),
        "NAME": bench_db_name(),
        "CONN_MAX_AGE": None if _max_age.lower() == "none" else int(_max_age),
        "CONN_HEALTH_CHECKS": False,
    }
}
RQ_QUEUES = {"envoy": {"URL": bench_redis_url(), "DEFAULT_TIMEOUT": -1}}

# Production-shaped: jobs go through Redis to envoy_worker processes; lease
# and sweep at their documented defaults.
ENVOY = {
    "EXECUTION": "rq",
    "LEASE_SECONDS": float(os.environ.get("ENVOY_BENCH_LEASE_SECONDS", 30)),
    "SWEEP_INTERVAL": float(os.environ.get("ENVOY_BENCH_SWEEP_INTERVAL", 10)),
    "PREPARED_STATEMENTS": None if os.environ.get("ENVOY_BENCH_PREPARED", "1") == "1" else False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"envoy_django": {"handlers": ["console"], "level": "WARNING"}},
}
