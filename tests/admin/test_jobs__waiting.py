"""A pending job held back says why, on the job list and the job page: a slot, or a rate limit."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.cache import caches
from django.test import override_settings

from envoy_django import scheduler
from envoy_django.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_waiting_for_a_slot_says_so_on_the_list_and_its_page(superuser_client):
    ids = [scheduler.schedule("per_customer", {"customer": "acme <b>"}) for _ in range(3)]
    assert Job.objects.get(pk=ids[2]).slot == "waiting"

    listing = superuser_client.get("/admin/envoy_django/job/").content.decode()
    assert listing.count("waiting for a slot: per_customer acme &lt;b&gt; (max_active 2)") == 1  # escaped

    page = superuser_client.get(f"/admin/envoy_django/job/{ids[2]}/change/").content.decode()
    assert "waiting for a slot: per_customer acme &lt;b&gt; (max_active 2)" in page
    assert "acme &lt;b&gt;" in page  # the concurrency key, shown beside it

    scheduler.resolve_blocking_job(ids[0], "go", 1)  # a slot frees: the job starts and the reason goes
    listing = superuser_client.get("/admin/envoy_django/job/").content.decode()
    assert "waiting for a slot" not in listing


def test_a_job_waiting_for_a_rate_limit_says_until_when(superuser_client):
    caches["default"].clear()
    settings = {"RATE_LIMITS": {"test-api": "2/m"}, "RATE_LIMIT_CACHE": "default"}
    with override_settings(ENVOY=settings), mock.patch("envoy_django.ratelimits._now", return_value=1_800_000_005.0):
        ids = [scheduler.schedule("rate_limited") for _ in range(3)]
    assert [Job.objects.get(pk=job_id).status for job_id in ids] == ["done", "done", "pending"]
    listing = superuser_client.get("/admin/envoy_django/job/").content.decode()
    assert listing.count("waiting for rate limit &#x27;test-api&#x27; (2/m) until") == 1
    page = superuser_client.get(f"/admin/envoy_django/job/{ids[2]}/change/").content.decode()
    assert "waiting for rate limit &#x27;test-api&#x27; (2/m) until" in page
    caches["default"].clear()
