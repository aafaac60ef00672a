"""The admin and flow versions: the version on the list and the page, the picture of the job's own version,
and the action that moves selected jobs to another version through a confirmation page."""

from __future__ import annotations

import pytest

from envoy_django import register, scheduler
from envoy_django.models import Job
from envoy_django.registry import unregister
from tests.testapp.flows import _VERSIONED

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/envoy_django/job/"


@pytest.fixture
def v1_job():
    unregister("versioned", 2)
    try:
        job_id = scheduler.schedule("versioned")
    finally:
        register("versioned", _VERSIONED[2], version=2)
    return job_id


def test_the_list_and_the_page_show_the_version_and_the_picture_is_the_jobs_version(superuser_client, v1_job):
    listing = superuser_client.get(URL).content.decode()
    assert "<td class=\"field-version\">v1</td>" in listing
    page = superuser_client.get(f"{URL}{v1_job}/change/").content.decode()
    assert "version 1" in page
    assert 'data-state="Wait"' in page and 'data-state="Await"' not in page  # v1's states, not v2's


def test_moving_jobs_asks_for_the_version_then_moves_them(superuser_client, v1_job):
    post = {"action": "migrate_jobs", "_selected_action": [v1_job]}
    page = superuser_client.post(URL, post)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Move jobs to another version" in html and 'value="2" selected' in html

    refused = superuser_client.post(URL, {**post, "apply": "1", "to_version": "2", "state_map": ""})
    assert refused.status_code == 200  # the page again, with the scheduler's refusal on it
    assert "state &#x27;Wait&#x27; of job(s)" in refused.content.decode()
    assert Job.objects.get(pk=v1_job).flow_version == 1

    bad_map = superuser_client.post(URL, {**post, "apply": "1", "to_version": "2", "state_map": "Wait"})
    assert "Line 1: write old name = new name." in bad_map.content.decode()

    done = superuser_client.post(URL, {**post, "apply": "1", "to_version": "2", "state_map": "Wait = Await"},
                                 follow=True)
    assert "Moved 1 job to version 2." in done.content.decode()
    assert (Job.objects.get(pk=v1_job).flow_version, Job.objects.get(pk=v1_job).state) == (2, "Await")


def test_moving_needs_jobs_of_one_flow_and_version(superuser_client, v1_job):
    v2_job = scheduler.schedule("versioned")
    response = superuser_client.post(URL, {"action": "migrate_jobs", "_selected_action": [v1_job, v2_job]},
                                     follow=True)
    assert "Select jobs of one flow and one version; nothing was moved." in response.content.decode()
