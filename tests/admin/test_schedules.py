"""Schedules in the admin: the form refuses what the API refuses, on the field; pause and resume."""

from __future__ import annotations

import pytest

from envoy_django import scheduler
from envoy_django.models import Schedule

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/envoy_django/schedule/"


def form(**overrides: str) -> dict[str, str]:
    return {"name": "nightly", "flow": "hello", "cron": "0 3 * * *", "timezone": "UTC", "input": '"night"',
            "enabled": "on", **overrides}


def test_adding_a_schedule_in_the_admin_computes_its_next_run(superuser_client):
    response = superuser_client.post(URL + "add/", form(), follow=True)
    assert response.status_code == 200
    row = Schedule.objects.get(name="nightly")
    assert (row.input, row.next_run_at.hour, row.next_run_at.minute) == ("night", 3, 0)
    assert "nightly" in superuser_client.get(URL).content.decode()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("cron", "61 * * * *", "invalid cron expression"),
    ("timezone", "Mars/Olympus", "unknown timezone"),
    ("flow", "nope", "no flow is registered as"),
])
def test_a_bad_field_is_a_form_error_on_that_field(superuser_client, field, value, message):
    response = superuser_client.post(URL + "add/", form(**{field: value}))
    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors.get(field, []))
    assert not Schedule.objects.exists()


def test_pause_and_resume_actions(superuser_client):
    scheduler.add_schedule("a", "hello", "*/5 * * * *")
    scheduler.add_schedule("b", "hello", "*/5 * * * *")
    ids = [str(pk) for pk in Schedule.objects.values_list("pk", flat=True)]
    response = superuser_client.post(URL, {"action": "pause", "_selected_action": ids, "index": "0"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Paused 2 schedules."]
    assert set(Schedule.objects.values_list("enabled", "next_run_at")) == {(False, None)}
    superuser_client.post(URL, {"action": "resume", "_selected_action": ids, "index": "0"})
    assert all(row.enabled and row.next_run_at for row in Schedule.objects.all())


def test_renaming_in_the_admin_keeps_one_row(superuser_client):
    row = scheduler.add_schedule("old name", "hello", "0 3 * * *")
    superuser_client.post(f"{URL}{row.pk}/change/", form(name="new name"), follow=True)
    assert list(Schedule.objects.values_list("pk", "name")) == [(row.pk, "new name")]
