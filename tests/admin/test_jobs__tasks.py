"""A plain ``@task`` on EnvoyBackend in the admin: its job page names the task, and a failed one can be retried."""

from __future__ import annotations

import pytest
from django.test import override_settings

from envoy_django.dispatch.tasks_api import tasks_module
from envoy_django.models import Job
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/envoy_django/job/"
Status = tasks_module().TaskResultStatus


def test_a_failed_task_shows_its_history_and_is_retried_from_the_admin(superuser_client):
    with override_settings(ENVOY={"MAX_RETRIES": 0}):
        result = tasks.flaky.enqueue(1)
    assert result.status == Status.FAILED

    page = superuser_client.get(f"{URL}{result.id}/change/").content.decode()
    assert "tests.testapp.tasks.flaky" in page  # the job's input names the task
    assert "attempt 1 of" in page  # the failed attempt, in the history

    response = superuser_client.post(URL, {"action": "retry_jobs", "_selected_action": [result.id], "index": "0"},
                                     follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Re-queued 1 job."]
    result.refresh()
    assert (result.status, result.return_value["attempt"], len(result.errors)) == (Status.SUCCESSFUL, 2, 1)
    assert Job.objects.get(pk=result.id).status == "done"

    listing = superuser_client.get(URL, {"flow": "envoy.task"}).content.decode()
    assert result.id in listing
