"""The job page tells the truth: a status endpoint for live refresh, no stale progress, steps as a count."""

from __future__ import annotations

import pytest

from envoy_django import scheduler
from envoy_django.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_status_endpoint_says_where_the_job_is(superuser_client, family):
    job_id, escalation = family()
    url = f"/admin/envoy_django/job/{job_id}/status/"
    status = superuser_client.get(url).json()
    assert status["status"] == "blocking" and status["finished"] is False and status["state"] == "Escalate"
    scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "ok": True}, "approved", user="alice")
    after = superuser_client.get(url).json()
    assert after["status"] == "done" and after["finished"] is True and after["updated_at"] != status["updated_at"]


def test_the_status_endpoint_is_for_those_who_may_view_jobs(make_user, login, family):
    job_id, _ = family()
    assert login(make_user("nosy")).get(f"/admin/envoy_django/job/{job_id}/status/").status_code == 403
    viewer = login(make_user("viewer", "view_job"))
    assert viewer.get("/admin/envoy_django/job/not-a-job/status/").status_code == 404


def test_only_an_unfinished_jobs_page_polls(superuser_client, family):
    job_id, escalation = family()
    page = superuser_client.get(f"/admin/envoy_django/job/{job_id}/change/").content.decode()
    assert "envoy_django/job_refresh.js" in page and f"/admin/envoy_django/job/{job_id}/status/" in page
    scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "ok": True}, "approved", user="alice")
    assert "job_refresh.js" not in superuser_client.get(f"/admin/envoy_django/job/{job_id}/change/").content.decode()


def test_a_finished_job_shows_no_stale_progress(superuser_client, evil_job):
    job_id, escalation = evil_job  # reported 50 % while it waited
    assert 'class="envoy-progress"' in superuser_client.get("/admin/envoy_django/job/").content.decode()
    scheduler.reply_to_escalation(escalation.pk, {"choice": "ok", "sure": True}, "approved", user="alice")
    assert Job.objects.get(pk=job_id).status == "done"
    html = superuser_client.get("/admin/envoy_django/job/").content.decode()
    assert 'class="envoy-progress"' not in html
    page = superuser_client.get(f"/admin/envoy_django/job/{job_id}/change/").content.decode()
    assert 'class="envoy-progress"' not in page
