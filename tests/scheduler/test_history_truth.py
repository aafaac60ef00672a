"""The job's history tells the truth about failures and retries."""

from __future__ import annotations

import pytest

from envoy_django import scheduler

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failed_attempt_is_recorded_under_the_state_it_failed_in_with_that_states_input():
    from tests.testapp import flows

    flows.calls.clear()
    job = scheduler.get_job(scheduler.schedule("fails_entering_b", "start"))
    assert (job.status, job.output) == ("done", "from A, then B")
    failed = job.steps.exclude(error="").get()
    # One step ran A's (empty) exit and route and B's enter: it failed in B, whose input is A's output.
    assert (failed.state, failed.phase, failed.input) == ("B", "enter", "from A")
    assert "B could not start" in failed.error


def test_a_retry_that_succeeds_clears_the_jobs_error():
    from tests.testapp import flows

    flows.calls.clear()
    job = scheduler.get_job(scheduler.schedule("flaky", 1))  # fails once, then succeeds
    assert job.status == "done"
    assert (job.error, job.error_type, job.traceback) == ("", "", "")
    assert job.steps.exclude(error="").count() == 1  # the failure stays in the history
