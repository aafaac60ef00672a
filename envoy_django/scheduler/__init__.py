"""The scheduler: ``from envoy_django import scheduler``.

``scheduler.schedule(...)``, ``scheduler.get_job(...)`` and the rest; see
``api.py``. ``run_job`` (the executor) is what workers call.
"""

from envoy_django.scheduler.api import (
    cancel_job,
    fail_job,
    get_job,
    list_blocking_jobs,
    reply_to_escalation,
    resolve_blocking_job,
    retry_job,
    schedule,
)
from envoy_django.scheduler.sweep import cleanup_orphaned_jobs

__all__ = [
    "cancel_job",
    "cleanup_orphaned_jobs",
    "fail_job",
    "get_job",
    "list_blocking_jobs",
    "reply_to_escalation",
    "resolve_blocking_job",
    "retry_job",
    "schedule",
]
