"""An async view using the scheduler's async API, as a site's ASGI view would."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse

from envoy_django import scheduler


async def schedule_view(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body or b"{}")
    job_id = await scheduler.aschedule(body["flow"], body.get("input"))
    job = await scheduler.aget_job(job_id)
    return JsonResponse({"job_id": job_id, "status": job.status, "output": job.output})


async def reply_view(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    await scheduler.areply_to_escalation(body["escalation_id"], body["values"], body["status"], user=body["user"])
    job = await scheduler.aget_job(body["job_id"])
    return JsonResponse({"status": job.status, "output": job.output})
