"""django-rq dispatch: the message is the job id, serialized as JSON.

JSON, not pickle: nothing a queue holds is ever unpickled by a worker.
"""

from __future__ import annotations

import datetime as dt
import uuid
from uuid import UUID

from django.utils import timezone
from rq.serializers import JSONSerializer

from envoy_django.conf import envoy_settings

PERFORM = "envoy_django.worker.perform"


def get_queue():
    import django_rq

    return django_rq.get_queue(envoy_settings.QUEUE, serializer=JSONSerializer, default_timeout=-1)


def enqueue(job_id: UUID | str, at: dt.datetime | None = None) -> None:
    from envoy_django.models import Job

    queue = get_queue()
    rq_id = f"envoy-{job_id}-{uuid.uuid4().hex[:8]}"
    options = dict(job_id=rq_id, result_ttl=0, failure_ttl=24 * 3600, job_timeout=-1)
    # Record the message id before pushing it: this UPDATE holds the job's row
    # lock until it commits, and a worker that picked the message up meanwhile
    # would skip the locked row (SKIP LOCKED) and leave the job to the sweep.
    Job.objects.filter(pk=job_id).update(rq_job_id=rq_id, enqueued_at=timezone.now())
    if at is not None and at > timezone.now():
        queue.enqueue_at(at, PERFORM, str(job_id), **options)
    else:
        queue.enqueue(PERFORM, str(job_id), **options)
