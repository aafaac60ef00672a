"""The Prometheus endpoint: who may read it, and what it says after a known set of jobs.

Counters are process-wide and the suite shares the process, so each test
compares a scrape after its jobs with one before. The endpoint's sums over
several worker processes are in tests/workers/test_metrics_workers.py.
"""

from __future__ import annotations

import datetime as dt
import sys
from unittest import mock

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.checks import check_envoy_settings
from envoy_django.models import Job
from tests.observability.support import TOKEN, URL, scrape, value
from tests.testapp import flows

pytestmark = pytest.mark.django_db(transaction=True)


def staff(django_user_model, username, *codenames):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="envoy_django",
                                                        codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_the_endpoint_is_closed_without_the_token_or_the_permission(django_user_model):
    assert Client().get(URL).status_code == 401
    assert Client().get(URL, HTTP_AUTHORIZATION="Bearer wrong-token-0123456789").status_code == 401
    assert Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert staff(django_user_model, "nobody").get(URL).status_code == 401
    assert staff(django_user_model, "viewer", "view_job").get(URL).status_code == 200
    with override_settings(ENVOY={"METRICS": True}):  # no token set: a bearer is never enough
        assert Client().get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 401
        assert Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 401


def test_counters_after_a_known_set_of_jobs():
    before = scrape()
    for _ in range(3):
        scheduler.schedule("ten_states")
    flows.calls.clear()
    scheduler.schedule("flaky", 2)  # two failed attempts, then done
    with override_settings(ENVOY={"MAX_RETRIES": 0}):
        scheduler.schedule("flaky", 5)  # fails at once
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("envoy_transitions_total", flow="ten_states") == 30
    assert delta("envoy_transition_seconds_count", flow="ten_states") == 30
    assert delta("envoy_transition_seconds_bucket", flow="ten_states", le="+Inf") == 30
    assert delta("envoy_jobs_finished_total", flow="ten_states", status="done") == 3
    assert delta("envoy_schedule_to_start_seconds_count", flow="ten_states") == 3
    assert delta("envoy_retries_total", flow="flaky") == 2
    assert delta("envoy_jobs_finished_total", flow="flaky", status="done") == 1
    assert delta("envoy_jobs_finished_total", flow="flaky", status="failed") == 1
    assert delta("envoy_transitions_total", flow="flaky") == 1  # only the committed one


def test_gauges_are_the_databases_unfinished_jobs_and_waiting_escalations():
    blocked = [scheduler.schedule("await_go") for _ in range(2)]
    asked = scheduler.schedule("ask")
    later = scheduler.schedule("hello", run_at=timezone.now() + dt.timedelta(hours=1))
    samples = scrape()
    assert value(samples, "envoy_jobs", flow="await_go", status="blocking") == 2
    assert value(samples, "envoy_jobs", flow="ask", status="blocking") == 1
    assert value(samples, "envoy_jobs", flow="hello", status="pending") == 1
    assert value(samples, "envoy_escalations_pending", flow="ask") == 1
    assert value(samples, "envoy_escalation_oldest_pending_seconds") >= 0
    scheduler.cancel_job(later)
    for job_id in blocked:
        scheduler.resolve_blocking_job(job_id, "go", "ok")
    samples = scrape()
    assert value(samples, "envoy_jobs", flow="await_go", status="blocking") == 0
    assert value(samples, "envoy_jobs", flow="hello", status="pending") == 0
    assert Job.objects.get(pk=asked).status == "blocking"


def test_what_the_sweep_recovers_is_counted_by_kind():
    job_id = scheduler.schedule("await_go")
    Job.objects.filter(pk=job_id).update(status="running", lease_owner="dead:1:1",
                                         lease_expires_at=timezone.now() - dt.timedelta(minutes=5))
    before = value(scrape(), "envoy_sweep_recovered_total", kind="expired_leases")
    assert scheduler.cleanup_orphaned_jobs()["expired_leases"] == 1
    assert value(scrape(), "envoy_sweep_recovered_total", kind="expired_leases") == before + 1


def test_without_prometheus_client_the_endpoint_says_what_to_install_and_the_check_refuses():
    with mock.patch.dict(sys.modules, {"prometheus_client": None}):
        response = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 501 and b"envoy-django[metrics]" in response.content
    with mock.patch("importlib.util.find_spec", return_value=None), override_settings(ENVOY={"METRICS": True}):
        assert [e.id for e in check_envoy_settings()] == ["envoy_django.E016"]
    with override_settings(ENVOY={"METRICS": True, "METRICS_TOKEN": "short"}):
        assert [e.id for e in check_envoy_settings()] == ["envoy_django.E017"]
