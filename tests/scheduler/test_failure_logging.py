"""Failures reach the logs: each retry at WARNING, a final failure at ERROR with the exception and the job."""

from __future__ import annotations

import logging

import pytest

from envoy_django import scheduler
from envoy_django.management import logconfig

pytestmark = pytest.mark.django_db(transaction=True)


def _records(caplog):
    return [r for r in caplog.records if r.name == "envoy_django.jobs"]


def test_each_retry_is_a_warning_and_the_final_failure_an_error_with_the_job(caplog):
    from tests.testapp import flows

    flows.calls.clear()
    with caplog.at_level(logging.INFO, logger="envoy_django"):
        job_id = scheduler.schedule("flaky", 10)  # fails every attempt: 1 + MAX_RETRIES (3)
    records = _records(caplog)
    assert [r.levelname for r in records] == ["WARNING", "WARNING", "WARNING", "ERROR"]
    assert "failed attempt 1 of 4; retrying" in records[0].getMessage()
    final = records[-1]
    assert final.exc_info is not None and "flaky failure 4" in str(final.exc_info[1])
    for record in records:
        assert (record.job_id, record.flow, record.state) == (job_id, "flaky", "Try")


def test_a_flow_ending_in_ctx_error_is_logged_as_a_failure(caplog):
    with caplog.at_level(logging.ERROR, logger="envoy_django.jobs"):
        job_id = scheduler.schedule("loop")  # max_steps 5: ends failed with MaxStepsExceeded
    assert scheduler.get_job(job_id).error_type == "MaxStepsExceeded"
    assert [r.job_id for r in _records(caplog)] == [job_id]


@pytest.fixture
def envoy_logger():
    logger = logging.getLogger("envoy_django")
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_verbosity_sets_the_level_only_where_logging_did_not(envoy_logger):
    envoy_logger.setLevel(logging.NOTSET)
    logconfig.configure(2)
    assert envoy_logger.level == logging.DEBUG

    envoy_logger.setLevel(logging.ERROR)  # what a site's LOGGING said
    logconfig.configure(2)
    assert envoy_logger.level == logging.ERROR
