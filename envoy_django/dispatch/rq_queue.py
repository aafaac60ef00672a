"""django-rq dispatch: the message is the job id, serialized as JSON.

JSON, not pickle: nothing a queue holds is ever unpickled, by a worker or by
django-rq's dashboard (the app sets the Envoy queue's SERIALIZER, see
``rq_settings.py``). And a worker runs only Envoy's own message:
``message_problem`` refuses anything else before it is imported or called.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Sequence
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone

from envoy_django.conf import envoy_settings
from envoy_django.exceptions import MissingExtraError
from envoy_django.flow.values import short_repr

try:
    from rq.serializers import JSONSerializer
except ImportError as exc:
    raise MissingExtraError("rq", "ENVOY['EXECUTION'] = 'rq'") from exc

PERFORM = "envoy_django.worker.perform"


_queues: dict[tuple[int, str], Any] = {}


def get_queue(name: str | None = None) -> Any:
    """The queue ``name`` (default ENVOY["QUEUE"]), one per process: its Redis connection pool is reused.

    django-rq builds a new Redis client (a new connection, and its handshake)
    on every ``get_queue()``; per enqueue that was most of ``schedule()``.
    """
    name = name or envoy_settings.QUEUE
    key = (os.getpid(), name)  # a forked process builds its own
    queue = _queues.get(key)
    if queue is None:
        import django_rq

        queue = _queues[key] = django_rq.get_queue(name, serializer=JSONSerializer, default_timeout=-1)
    return queue


@receiver(setting_changed)
def _forget_queues(setting: str, **kwargs: Any) -> None:
    if setting in ("RQ_QUEUES", "ENVOY", "CACHES"):
        _queues.clear()


class RQDispatcher:
    def enqueue(self, jobs: Sequence[tuple[str, dt.datetime | None, str | None]]) -> None:
        by_queue: dict[str | None, list[tuple[str, dt.datetime | None]]] = {}
        for job_id, at, queue_name in jobs:
            by_queue.setdefault(queue_name, []).append((job_id, at))
        for queue_name, messages in by_queue.items():
            _enqueue(get_queue(queue_name), messages)

    def run_enqueued(self) -> None:
        """Workers run the jobs."""


def _enqueue(queue: Any, messages: list[tuple[str, dt.datetime | None]]) -> None:
    """Due messages in one MULTI/EXEC (RQ's single enqueue takes two); delayed ones to RQ's scheduled registry."""
    now = timezone.now()
    due = [job_id for job_id, at in messages if at is None or at <= now]
    if due:  # one pipeline, one round trip, for one message or the lot (schedule_many, a sweep)
        queue.enqueue_many([queue.prepare_data(PERFORM, [job_id], timeout=-1, **_options(job_id))
                            for job_id in due])
    for job_id, at in messages:
        if at is not None and at > now:
            queue.enqueue_at(at, PERFORM, job_id, job_timeout=-1, **_options(job_id))


def _options(job_id: str) -> dict[str, Any]:
    """The RQ options of an Envoy message (with no timeout: RQ calls it ``job_timeout`` or ``timeout``)."""
    return dict(job_id=f"envoy-{job_id}-{uuid.uuid4().hex[:8]}", result_ttl=0, failure_ttl=24 * 3600)


def message_problem(rq_job: Any) -> str | None:
    """Why an RQ message is not Envoy's own (``perform("<job uuid>")`` and nothing else), or None if it is.

    Read from the message's JSON and stored fields only: nothing it names is
    imported, and a pickle fails to decode as JSON before anything runs.
    """
    try:
        func_name, instance, args, kwargs = rq_job.func_name, rq_job.instance, rq_job.args, rq_job.kwargs
    except Exception as exc:  # a pickle or garbage: RQ's DeserializationError, or worse
        return f"not a JSON message ({type(exc).__name__})"
    if func_name != PERFORM:
        return f"it calls {short_repr(func_name)}, not {PERFORM}"
    if instance is not None:
        return "it has an instance"
    if kwargs:
        return "it has keyword arguments"
    if not isinstance(args, (list, tuple)) or len(args) != 1 or not isinstance(args[0], str):
        return f"its arguments are {short_repr(args)}, not one job id"
    try:
        canonical = str(uuid.UUID(args[0])) == args[0]
    except ValueError:
        canonical = False
    if not canonical:
        return f"its argument {short_repr(args[0])} is not a job id"
    for callback in ("success", "failure", "stopped"):
        if getattr(rq_job, f"_{callback}_callback_name", None):
            return f"it names an on_{callback} callback"
    if getattr(rq_job, "_dependency_ids", None):
        return "it depends on other RQ jobs"
    return None
