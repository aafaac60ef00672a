"""How "run job X" reaches a worker. Carries job ids only.

A dispatcher is called from ``scheduler.aftercommit`` once the transaction
that made the job runnable has committed (a worker must never receive a job
whose row it cannot see). ``ENVOY["EXECUTION"]`` picks it: ``"rq"`` pushes
the id onto the django-rq queue for ``envoy_worker`` processes;
``"tasks"`` enqueues it on the site's Django Tasks backend;
``"immediate"`` runs the job in the calling process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from envoy_django.conf import envoy_settings


class Dispatcher(Protocol):
    def enqueue(self, jobs: Sequence[tuple[str, dt.datetime | None, str | None]]) -> None:
        """Hand each ``(job_id, at, queue)`` to a worker, to run at ``at`` (now if None), in few round trips.

        ``queue``: the flow's queue (``register(..., queue=...)``), None for ENVOY["QUEUE"].

        May raise: the caller logs it, and counts them all as not sent (the
        sweep sends them again; a duplicate message is harmless).
        """

    def run_enqueued(self) -> None:
        """Run what was handed over, if this dispatcher runs jobs itself; never raises."""


def get_dispatcher() -> Dispatcher:
    if envoy_settings.EXECUTION == "rq":
        from envoy_django.dispatch.rq_queue import RQDispatcher

        return RQDispatcher()
    if envoy_settings.EXECUTION == "tasks":
        from envoy_django.dispatch.tasks_queue import TasksDispatcher

        return TasksDispatcher()
    from envoy_django.dispatch.immediate import dispatcher

    return dispatcher
