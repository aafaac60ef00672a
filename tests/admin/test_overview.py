"""The "Envoy overview" admin page: unfinished work, the last hour, escalations waiting, stalled jobs."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.models import Job
from envoy_django.overview import last_hour
from tests.testapp import flows

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/envoy_django/overview/"


def test_the_page_shows_what_is_unfinished_what_ended_and_who_is_waited_for(superuser_client):
    for _ in range(2):
        scheduler.schedule("await_go")
    scheduler.schedule("ask")
    for _ in range(3):
        scheduler.schedule("hello")
    flows.calls.clear()
    from django.test import override_settings

    with override_settings(ENVOY={"MAX_RETRIES": 0}):
        scheduler.schedule("flaky", 1)
    stalled = scheduler.schedule("hello", run_at=timezone.now() + dt.timedelta(hours=1))
    Job.objects.filter(pk=stalled).update(run_after=timezone.now() - dt.timedelta(hours=1),
                                          enqueued_at=timezone.now() - dt.timedelta(hours=1))

    response = superuser_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    data = response.context["overview"]
    assert {row["flow"]: (row["pending"], row["blocking"]) for row in data.unfinished} == {
        "await_go": (0, 2), "ask": (0, 1), "hello": (1, 0)}
    assert data.totals == {"unfinished": 4, "done": 3, "failed": 1, "cancelled": 0}
    assert [e.job.flow for e in data.escalations] == ["ask"] and "Go ahead?" in page
    assert [str(job.pk) for job in data.stalled] == [stalled] and data.stalled_count == 1
    assert page.count('class="envoy-chart__done"') >= 1 and 'class="envoy-chart__failed"' in page
    assert "<script" not in page.split('id="content-main"')[1].split("</svg>")[0]  # the chart is plain SVG


def test_a_job_waiting_for_its_run_at_or_a_slot_is_not_stalled(superuser_client):
    scheduler.schedule("hello", run_at=timezone.now() + dt.timedelta(hours=1))
    Job.objects.update(enqueued_at=timezone.now() - dt.timedelta(hours=1))
    assert superuser_client.get(URL).context["overview"].stalled_count == 0


def test_the_last_hour_has_sixty_minutes_and_counts_each_end_in_its_minute():
    now = timezone.now()
    minutes = last_hour(now)
    assert len(minutes) == 60 and minutes[-1].at == now.replace(second=0, microsecond=0)
    scheduler.schedule("hello")
    assert sum(m.done for m in last_hour(timezone.now())) == 1


def test_it_is_listed_for_and_only_for_those_who_may_view_jobs(make_user, login):
    viewer = login(make_user("viewer", "view_job"))
    assert viewer.get(URL).status_code == 200
    assert "Envoy overview" in viewer.get("/admin/").content.decode()
    other = login(make_user("other", "view_escalation"))
    assert other.get(URL).status_code == 403
    assert "Envoy overview" not in other.get("/admin/").content.decode()
