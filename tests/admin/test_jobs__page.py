"""The read-only job page: every status, the flow picture, history, waits, family, payloads; who may do what."""

from __future__ import annotations

import re

import pytest

from envoy_django import StateFlow, register, scheduler
from envoy_django.models import Job, Step
from envoy_django.registry import unregister

pytestmark = pytest.mark.django_db(transaction=True)


def page(client, job_id: str) -> str:
    response = client.get(f"/admin/envoy_django/job/{job_id}/change/")
    assert response.status_code == 200
    return response.content.decode()


def state_classes(html: str, state: str) -> set[str]:
    match = re.search(rf'<g class="([^"]*)" data-state="{re.escape(state)}">', html)
    assert match, f"no state {state!r} in the picture"
    return set(match[1].split())


@pytest.mark.parametrize("status", ["pending", "running", "blocking", "done", "failed", "cancelled"])
def test_job_page_for_each_status(superuser_client, jobs_in_each_status, status):
    job_id = jobs_in_each_status[status]
    html = page(superuser_client, job_id)
    job = Job.objects.get(pk=job_id)
    assert f'envoy-badge--{status}">{status}<' in html
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="envoy-flow"' in html
    current = state_classes(html, job.state)
    if job.is_finished:
        assert "envoy-state--current" not in current
    else:
        assert "envoy-state--current" in current
    assert ("envoy-state--failed" in current) == (status == "failed")
    for step in Step.objects.filter(job_id=job_id):
        assert "envoy-state--visited" in state_classes(html, step.state)
    assert 'name="_save"' not in html and 'name="_continue"' not in html  # read-only


def test_done_job_shows_history_in_commit_order_with_payloads(superuser_client, jobs_in_each_status):
    html = page(superuser_client, jobs_in_each_status["done"])
    history = html[html.index('id="envoy-history"'):html.index('id="envoy-waits"')]
    assert history.index("<td>Start</td>") < history.index("<td>End</td>")
    assert "Hello admin! Bye!" in html  # output, pretty-printed JSON
    assert "This job never waited." in html


def test_failed_job_shows_error_and_traceback(superuser_client, jobs_in_each_status):
    html = page(superuser_client, jobs_in_each_status["failed"])
    assert "RuntimeError: on_state of state &#x27;Try&#x27; raised RuntimeError: flaky failure 1" in html
    assert "Traceback (most recent call last)" in html
    assert 'class="envoy-row--error"' in html


def test_blocking_job_shows_waits_data_children_and_escalation(superuser_client, family):
    job_id, escalation = family()
    html = page(superuser_client, job_id)
    waits = html[html.index('id="envoy-waits"'):]
    assert "outside event" in waits and "child job" in waits and "escalation" in waits
    assert 'envoy-badge--resolved">resolved<' in waits and 'envoy-badge--pending">pending<' in waits
    assert "&quot;amount&quot;: 42" in html  # the payment wait's value, and data["payment"]
    assert f"/admin/envoy_django/escalation/{escalation.pk}/reply/" in html
    for child in Job.objects.filter(parent_id=job_id):
        assert f"/admin/envoy_django/job/{child.pk}/change/" in html
        assert f"/admin/envoy_django/job/{job_id}/change/" in page(superuser_client, str(child.pk))


def test_job_of_a_flow_no_longer_registered(superuser_client):
    register("retired", StateFlow([{"name": "Only", "on_state": lambda ctx: ctx}]))
    job_id = scheduler.schedule("retired")
    unregister("retired")
    html = page(superuser_client, job_id)
    assert "The flow “retired” version 1 is not registered in this process" in html
    assert "<svg" not in html.split('id="envoy-flow-heading"')[1].split("</section>")[0]
    assert "<td>Only</td>" in html  # the history is still there


def test_staff_with_view_permission_sees_but_cannot_change(make_user, login, jobs_in_each_status):
    client = login(make_user("viewer", "view_job"))
    job_id = jobs_in_each_status["done"]
    html = page(client, job_id)
    assert 'class="deletelink"' not in html
    assert client.post(f"/admin/envoy_django/job/{job_id}/change/", {"flow": "x"}).status_code == 403
    assert client.get("/admin/envoy_django/job/add/").status_code == 403
    assert client.get(f"/admin/envoy_django/job/{job_id}/delete/").status_code == 403
    assert Job.objects.get(pk=job_id).flow == "hello"


def test_only_superusers_delete(make_user, login, superuser_client, jobs_in_each_status):
    job_id = jobs_in_each_status["done"]
    staff = login(make_user("deleter", "view_job", "change_job", "delete_job"))
    assert 'class="deletelink"' not in page(staff, job_id)
    assert staff.get(f"/admin/envoy_django/job/{job_id}/delete/").status_code == 403
    assert 'class="deletelink"' in page(superuser_client, job_id)
    assert superuser_client.get(f"/admin/envoy_django/job/{job_id}/delete/").status_code == 200
    superuser_client.post(f"/admin/envoy_django/job/{job_id}/delete/", {"post": "yes"})
    assert not Job.objects.filter(pk=job_id).exists()


def test_anonymous_is_sent_to_login(client, jobs_in_each_status):
    response = client.get(f"/admin/envoy_django/job/{jobs_in_each_status['done']}/change/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_page_fetches_no_external_resources(superuser_client, jobs_in_each_status):
    html = page(superuser_client, jobs_in_each_status["blocking"])
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "/static/envoy_django/admin.css" in html
