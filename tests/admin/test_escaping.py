"""Flow data may carry model output: every page shows a script tag from it as text."""

from __future__ import annotations

import pytest

from envoy_django.models import Job
from tests.admin.conftest import EVIL

pytestmark = pytest.mark.django_db(transaction=True)

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def assert_escaped(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    html = response.content.decode()
    assert EVIL not in html, url
    assert ESCAPED in html, url
    return html


def test_every_page_escapes_flow_data(superuser_client, evil_job):
    job_id, escalation = evil_job
    for url in (
        "/admin/envoy_django/job/",
        f"/admin/envoy_django/job/{job_id}/change/",
        "/admin/envoy_django/escalation/?assigned=all",
        f"/admin/envoy_django/escalation/{escalation.pk}/change/",
        f"/admin/envoy_django/escalation/{escalation.pk}/reply/",
    ):
        assert_escaped(superuser_client, url)


def test_reply_form_escapes_labels_and_options(superuser_client, evil_job):
    html = assert_escaped(superuser_client, f"/admin/envoy_django/escalation/{evil_job[1].pk}/reply/")
    assert f'<option value="{ESCAPED}">Label {ESCAPED}</option>' in html
    assert f"Pick {ESCAPED}" in html and f"Why {ESCAPED}" in html and f"Sure {ESCAPED}" in html
    assert f"Publish {ESCAPED}?" in html


def test_the_offered_option_with_markup_round_trips(superuser_client, evil_job):
    job_id, escalation = evil_job
    data = {"input-choice": EVIL, "input-why": EVIL, "input-sure": "on", "decision": "approved"}
    response = superuser_client.post(f"/admin/envoy_django/escalation/{escalation.pk}/reply/", data, follow=True)
    html = response.content.decode()
    assert EVIL not in html and ESCAPED in html
    job = Job.objects.get(pk=job_id)
    assert job.status == "done" and job.output["reply"]["value"]["choice"] == EVIL


def test_job_output_error_and_picture_are_escaped(superuser_client, evil_job):
    job_id, _ = evil_job
    Job.objects.filter(pk=job_id).update(output={"html": EVIL}, error=EVIL, traceback=EVIL, error_type="X")
    html = assert_escaped(superuser_client, f"/admin/envoy_django/job/{job_id}/change/")
    assert f'data-state="Ask {ESCAPED}"' in html  # the SVG's own escaping
    assert f"&quot;html&quot;: &quot;{ESCAPED}&quot;" in html
