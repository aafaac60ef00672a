"""Changelist actions: cancel, fail (with a reason), retry - through the scheduler, errors per job."""

from __future__ import annotations

import pytest
from django.test import override_settings

from envoy_django.admin import job_actions
from envoy_django.models import Job
from tests.testapp import flows

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/envoy_django/job/"


def act(client, action: str, *job_ids: str, **extra: str):
    data = {"action": action, "_selected_action": list(job_ids), "index": "0", **extra}
    return client.post(URL, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def status(job_id: str) -> str:
    return Job.objects.get(pk=job_id).status


def test_cancel(superuser_client, jobs_in_each_status):
    blocking = jobs_in_each_status["blocking"]
    response = act(superuser_client, "cancel_jobs", blocking)
    assert messages_of(response) == ["Cancelled 1 job."]
    assert status(blocking) == "cancelled"
    assert set(Job.objects.filter(parent_id=blocking).values_list("status", flat=True)) == {"done"}


def test_cancel_finished_jobs_gives_one_error_per_job_and_goes_on(superuser_client, jobs_in_each_status):
    done, pending, failed = (jobs_in_each_status[s] for s in ("done", "pending", "failed"))
    response = act(superuser_client, "cancel_jobs", done, pending, failed)
    messages = messages_of(response)
    assert "Cancelled 1 job." in messages
    assert f"job {done} is already done; nothing to cancel" in messages
    assert f"job {failed} is already failed; nothing to cancel" in messages
    assert (status(done), status(pending), status(failed)) == ("done", "cancelled", "failed")


def test_fail_asks_for_a_reason_first(superuser_client, jobs_in_each_status):
    running = jobs_in_each_status["running"]
    response = act(superuser_client, "fail_jobs", running)
    assert response.status_code == 200
    assert response.templates[0].name == "admin/envoy_django/job/fail_jobs.html"
    assert response.context["form"].initial["reason"] == "failed from the admin by root"
    html = response.content.decode()
    assert f'name="_selected_action" value="{running}"' in html and 'name="csrfmiddlewaretoken"' in html
    assert status(running) == "running"


def test_fail_with_the_reason(superuser_client, jobs_in_each_status):
    running, done = jobs_in_each_status["running"], jobs_in_each_status["done"]
    data = {"action": "fail_jobs", "_selected_action": [running, done], "apply": "Fail jobs",
            "reason": "failed from the admin by root"}
    response = superuser_client.post(URL, data, follow=True)
    assert "Failed 1 job." in messages_of(response)
    assert f"job {done} is already done; nothing to fail" in messages_of(response)
    job = Job.objects.get(pk=running)
    assert (job.status, job.error, job.error_type) == ("failed", "failed from the admin by root", "FailedByOperator")


def test_fail_without_a_reason_shows_the_form_again(superuser_client, jobs_in_each_status):
    running = jobs_in_each_status["running"]
    data = {"action": "fail_jobs", "_selected_action": [running], "apply": "Fail jobs", "reason": ""}
    response = superuser_client.post(URL, data)
    assert response.status_code == 200 and response.context["form"].errors["reason"]
    assert status(running) == "running"


def test_retry_resumes_a_failed_job(superuser_client):
    from envoy_django import scheduler

    flows.calls.clear()
    with override_settings(ENVOY={"MAX_RETRIES": 0}):
        job_id = scheduler.schedule("flaky", 1)
    assert status(job_id) == "failed"
    response = act(superuser_client, "retry_jobs", job_id)
    assert messages_of(response) == ["Re-queued 1 job."]
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.output) == ("done", 2)  # the embedded mode ran it again at once


def test_retry_of_jobs_that_did_not_fail_is_refused_per_job(superuser_client, jobs_in_each_status):
    done, blocking = jobs_in_each_status["done"], jobs_in_each_status["blocking"]
    messages = messages_of(act(superuser_client, "retry_jobs", done, blocking))
    assert f"job {done} is done; only failed jobs can be retried" in messages
    assert f"job {blocking} is blocking; only failed jobs can be retried" in messages
    assert (status(done), status(blocking)) == ("done", "blocking")


def test_too_many_jobs_at_once_changes_nothing(superuser_client, jobs_in_each_status, monkeypatch):
    monkeypatch.setattr(job_actions, "ACTION_LIMIT", 1)
    blocking, pending = jobs_in_each_status["blocking"], jobs_in_each_status["pending"]
    messages = messages_of(act(superuser_client, "cancel_jobs", blocking, pending))
    assert messages == ["Select at most 1 jobs at a time; nothing was changed."]
    assert (status(blocking), status(pending)) == ("blocking", "pending")


def test_staff_who_may_only_view_jobs_get_no_actions(make_user, login, jobs_in_each_status):
    client = login(make_user("viewer", "view_job"))
    assert 'value="cancel_jobs"' not in client.get(URL).content.decode()
    blocking = jobs_in_each_status["blocking"]
    act(client, "cancel_jobs", blocking)
    assert status(blocking) == "blocking"


def test_staff_with_change_permission_may_act(make_user, login, jobs_in_each_status):
    client = login(make_user("operator", "view_job", "change_job"))
    html = client.get(URL).content.decode()
    assert 'value="cancel_jobs"' in html and 'value="delete_selected"' not in html
    act(client, "cancel_jobs", jobs_in_each_status["blocking"])
    assert status(jobs_in_each_status["blocking"]) == "cancelled"
