"""The ``ENVOY`` settings dict, with documented defaults.

Read lazily and rebuilt on ``setting_changed``, so ``override_settings``
works and nothing is read at import time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # "immediate": run jobs in the calling process after commit (no Redis);
    # "rq": enqueue job ids on the django-rq queue QUEUE for envoy_worker;
    # "tasks": enqueue them on the Django Tasks backend TASKS_BACKEND (a TASKS alias).
    "EXECUTION": "immediate",
    "TASKS_BACKEND": "default",
    "QUEUE": "envoy",
    # A failing phase runs at most 1 + MAX_RETRIES times.
    "MAX_RETRIES": 3,
    # Backoff before retry n (0-based): RETRY_BACKOFF * 2**n seconds, capped, with jitter.
    "RETRY_BACKOFF": 1.0,
    "RETRY_BACKOFF_MAX": 300.0,
    # A running job's lease; renewed by a heartbeat every LEASE_SECONDS / 3.
    "LEASE_SECONDS": 30.0,
    # How often each envoy_worker (or envoy_sweep) runs the recovery sweep.
    "SWEEP_INTERVAL": 10.0,
    # A job claimed this many times without committing anything fails as a poison job.
    "MAX_CLAIMS": 10,
    # Largest input, output, data or reply accepted, in bytes of JSON.
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    # Finished jobs older than this ("30d", "12h"...) are deleted by the sweep, a batch
    # per sweep (envoy_purge does it by hand). None: keep every row forever.
    "RETENTION": None,
    # Rate limits that handlers (and ToolAgent(rate_limit=...)) take calls from, by name:
    # {"openai": "60/m"}. Counted in the Django cache RATE_LIMIT_CACHE, shared by every worker.
    "RATE_LIMITS": {},
    "RATE_LIMIT_CACHE": "default",
    # Count transitions, retries, ends and sweeps for Prometheus (needs the [metrics] extra);
    # envoy_django.urls serves them at metrics/ to staff who may view jobs, or to this bearer token.
    "METRICS": False,
    "METRICS_TOKEN": None,
    # Run the engine's own SQL as prepared statements on PostgreSQL (envoy_django/scheduler/prepared.py).
    # None: yes, unless DATABASES sets DISABLE_SERVER_SIDE_CURSORS (a transaction-pooling PgBouncer).
    "PREPARED_STATEMENTS": None,
    # Where a streaming model call's text so far is kept for the job page (a cache every process shares).
    "STREAM_CACHE": "default",
}

NUMERIC_KEYS = (
    "MAX_RETRIES", "RETRY_BACKOFF", "RETRY_BACKOFF_MAX", "LEASE_SECONDS", "SWEEP_INTERVAL", "MAX_CLAIMS",
    "MAX_PAYLOAD_BYTES",
)


class EnvoySettings:
    """``envoy_settings.LEASE_SECONDS`` and so on; an unknown key is an AttributeError."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    @property
    def user_settings(self) -> dict[str, Any]:
        return dict(getattr(django_settings, "ENVOY", None) or {})

    def _merged(self) -> dict[str, Any]:
        if self._cache is None:
            merged = dict(DEFAULTS)
            merged.update({k: v for k, v in self.user_settings.items() if k in DEFAULTS})
            self._cache = merged
        return self._cache

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in DEFAULTS:
            raise AttributeError(f"unknown ENVOY setting {key!r} (known: {', '.join(DEFAULTS)})")
        return self._merged()[key]

    def reload(self) -> None:
        self._cache = None


envoy_settings = EnvoySettings()


@receiver(setting_changed)
def _reload(setting: str, **kwargs: Any) -> None:
    if setting in ("ENVOY", "RQ_QUEUES"):
        envoy_settings.reload()
        from envoy_django.dispatch.rq_settings import use_json_serializer

        use_json_serializer()
