"""django-rq dispatch: the message is the job id, serialized as JSON.

JSON, not pickle: nothing a queue holds is ever unpickled by a worker.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.utils import timezone
from rq.serializers import JSONSerializer

from envoy_django.conf import envoy_settings

PERFORM = "envoy_django.worker.perform"


def get_queue() -> Any:
    import django_rq

    return django_rq.get_queue(envoy_settings.QUEUE, serializer=JSONSerializer, default_timeout=-1)


class RQDispatcher:
    def enqueue(self, job_id: str, at: dt.datetime | None = None) -> None:
        queue = get_queue()
        options: dict[str, Any] = dict(
            job_id=f"envoy-{job_id}-{uuid.uuid4().hex[:8]}", result_ttl=0, failure_ttl=24 * 3600, job_timeout=-1
        )
        if at is not None and at > timezone.now():
            queue.enqueue_at(at, PERFORM, str(job_id), **options)
        else:
            queue.enqueue(PERFORM, str(job_id), **options)

    def run_enqueued(self) -> None:
        """Workers run the jobs."""
