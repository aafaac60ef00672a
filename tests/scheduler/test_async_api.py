"""The scheduler from async code: ``await scheduler.aschedule(...)`` in an ASGI view.

Before, ``schedule()`` from async code raised SynchronousOnlyOperation, and
through ``sync_to_async`` an ``async def`` handler using the async ORM
failed with "Single thread executor already being used, would deadlock":
the engine ran async handlers with ``asyncio.run``. It now uses Django's
``async_to_sync``, and the API has ``a``-prefixed twins.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from envoy_django import scheduler
from envoy_django.models import Escalation

pytestmark = pytest.mark.django_db(transaction=True)


def post(path: str, body: dict) -> dict:
    response = async_to_sync(AsyncClient().post)(path, json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def test_an_asgi_view_schedules_a_job_whose_async_handler_uses_the_async_orm():
    result = post("/async/schedule/", {"flow": "async_orm"})
    assert (result["status"], result["output"]) == ("done", 2)  # alice and bob


def test_an_asgi_view_answers_an_escalation():
    job_id = post("/async/schedule/", {"flow": "ask", "input": None})["job_id"]
    escalation = Escalation.objects.get(job_id=job_id)
    result = post("/async/reply/", {"escalation_id": str(escalation.pk), "job_id": job_id,
                                    "values": {"reason": "a"}, "status": "approved", "user": "alice"})
    assert (result["status"], result["output"]) == ("done", "approved")


def test_every_async_twin_runs_its_sync_call():
    @async_to_sync
    async def lifecycle() -> dict:
        waiting = await scheduler.aschedule("await_go")
        await scheduler.aresolve_blocking_job(waiting, "go", "now")
        failing = await scheduler.aschedule("await_go")
        await scheduler.afail_job(failing, "no")
        await scheduler.aretry_job(failing)  # resumes with its wait cancelled, and finishes
        cancelled = await scheduler.aschedule("await_go")
        await scheduler.acancel_job(cancelled)
        blocked = await scheduler.alist_blocking_jobs()
        asked = await scheduler.aschedule("ask")
        escalations = await scheduler.alist_escalations()
        return {
            "waiting": (await scheduler.aget_job(waiting)).output,
            "failing": (await scheduler.aget_job(failing)).status,
            "cancelled": (await scheduler.aget_job(cancelled)).status,
            "blocked": [job["job_id"] for job in blocked],
            "escalations": [row["job_id"] for row in escalations],
            "asked": asked,
        }

    result = lifecycle()
    assert (result["waiting"], result["failing"], result["cancelled"]) == ("now", "done", "cancelled")
    assert result["blocked"] == []
    assert result["escalations"] == [result["asked"]]
