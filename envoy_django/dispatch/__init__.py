"""How "run job X" reaches a worker. Carries job ids only.

``enqueue`` is always called from ``transaction.on_commit``: a worker must
never receive a job whose row it cannot see yet.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from envoy_django.conf import envoy_settings


def enqueue(job_id: UUID | str, at: dt.datetime | None = None) -> None:
    if envoy_settings.EXECUTION == "rq":
        from envoy_django.dispatch import rq

        rq.enqueue(job_id, at)
    else:
        from envoy_django.dispatch import immediate

        immediate.enqueue(job_id, at)


def enqueue_on_commit(job_id: UUID | str, at: dt.datetime | None = None) -> None:
    from django.db import transaction

    transaction.on_commit(lambda: enqueue(job_id, at))
