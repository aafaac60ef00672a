"""The scheduler: ``from envoy_django import scheduler``.

``scheduler.schedule(...)``, ``scheduler.get_job(...)`` and the rest; see
``api.py``; their async twins (``aschedule``, ...) are in ``asyncapi.py``.
``run_job`` (the executor) is what workers call.
"""

from envoy_django.scheduler.api import (
    cancel_job,
    fail_job,
    get_job,
    list_blocking_jobs,
    list_escalations,
    reply_to_escalation,
    resolve_blocking_job,
    retry_job,
    schedule,
    schedule_many,
)
from envoy_django.scheduler.asyncapi import (
    acancel_job,
    afail_job,
    aget_job,
    alist_blocking_jobs,
    alist_escalations,
    areply_to_escalation,
    aresolve_blocking_job,
    aretry_job,
    aschedule,
    aschedule_many,
)
from envoy_django.scheduler.schedules import add_schedule, remove_schedule, run_due_schedules
from envoy_django.scheduler.sweep import cleanup_orphaned_jobs
from envoy_django.scheduler.versions import migrate_jobs

__all__ = [
    "add_schedule",
    "acancel_job",
    "afail_job",
    "aget_job",
    "alist_blocking_jobs",
    "alist_escalations",
    "areply_to_escalation",
    "aresolve_blocking_job",
    "aretry_job",
    "aschedule",
    "aschedule_many",
    "cancel_job",
    "cleanup_orphaned_jobs",
    "fail_job",
    "get_job",
    "list_blocking_jobs",
    "list_escalations",
    "migrate_jobs",
    "remove_schedule",
    "reply_to_escalation",
    "resolve_blocking_job",
    "retry_job",
    "run_due_schedules",
    "schedule",
    "schedule_many",
]
