"""Envoy's own admin pages use the breadcrumbs markup of the running Django's admin.

Django 6.1 turned the admin's breadcrumbs from a ``<div>`` into an ``<ol>``
and styles only the list: the reply and fail-jobs pages, written for the
``<div>``, showed unstyled breadcrumbs there.
"""

from __future__ import annotations

import re

import pytest

from tests.admin.conftest import blocking_family

pytestmark = pytest.mark.django_db(transaction=True)


def breadcrumbs(html: str) -> str:
    match = re.search(r'<(ol|div) class="breadcrumbs">(.*?)</\1>', html, re.S)
    assert match, "no breadcrumbs"
    return match.group(1), re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(2))).strip()


def test_the_reply_and_fail_pages_use_the_admins_own_breadcrumbs(superuser_client):
    job_id, escalation = blocking_family("root")
    admins_tag, _ = breadcrumbs(superuser_client.get(f"/admin/envoy_django/job/{job_id}/change/").content.decode())

    reply = superuser_client.get(f"/admin/envoy_django/escalation/{escalation.pk}/reply/").content.decode()
    tag, text = breadcrumbs(reply)
    assert tag == admins_tag
    assert text.startswith("Home") and "Escalations" in text and text.endswith("Reply")

    failing = superuser_client.post("/admin/envoy_django/job/", {
        "action": "fail_jobs", "_selected_action": [job_id], "index": "0",
    }).content.decode()
    tag, text = breadcrumbs(failing)
    assert tag == admins_tag
    assert text.startswith("Home") and text.endswith("Fail jobs")
