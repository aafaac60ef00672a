"""ENVOY["RATE_LIMITS"]: a call over the limit puts its job back to pending until the limit has room.

The flow ``rate_limited`` (tests/testapp/flows.py) takes one call from the
limit "test-api" and outputs when it got through. The clock of the limit's
windows is mocked, so no test depends on where in a window it runs.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core.cache import caches
from django.core.checks import Error, Warning
from django.test import override_settings

from envoy_django import scheduler
from envoy_django.checks import check_envoy_settings
from envoy_django.exceptions import InvalidArgumentError, RateLimitedError
from envoy_django.models import Job, Step
from envoy_django.ratelimits import Rate, acquire

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_800_000_000.0  # the start of a one-minute window (divisible by 60)
IMMEDIATE = {"EXECUTION": "immediate", "RATE_LIMITS": {"test-api": "2/m"}, "RATE_LIMIT_CACHE": "default"}


@pytest.fixture(autouse=True)
def fresh_cache():
    caches["default"].clear()
    yield
    caches["default"].clear()


def at(seconds: float):
    return mock.patch("envoy_django.ratelimits._now", return_value=seconds)


@pytest.mark.parametrize("text, calls, seconds", [
    ("60/m", 60, 60), ("10/s", 10, 1), ("1000/h", 1000, 3600), ("5/10s", 5, 10), (" 20000 / d ", 20000, 86400),
])
def test_rates_parse(text, calls, seconds):
    assert (Rate.parse(text, "x").calls, Rate.parse(text, "x").seconds) == (calls, seconds)


@pytest.mark.parametrize("text", ["60", "60/min", "0/m", "-1/m", "5/0s", "m/60", "", None, 60])
def test_bad_rates_are_an_error_naming_the_setting(text):
    with pytest.raises(InvalidArgumentError, match=r"ENVOY\['RATE_LIMITS'\]\['api'\] must be a rate like"):
        Rate.parse(text, "ENVOY['RATE_LIMITS']['api']")


@override_settings(ENVOY=IMMEDIATE)
def test_acquire_lets_the_rate_through_then_says_when_to_come_back():
    with at(T0 + 5):
        acquire("test-api")
        acquire("test-api")
        with pytest.raises(RateLimitedError) as raised:
            acquire("test-api")
    assert raised.value.retry_at == dt.datetime.fromtimestamp(T0 + 60, tz=dt.UTC)
    assert raised.value.name == "test-api" and raised.value.rate == "2/m"
    with at(T0 + 60):
        acquire("test-api")  # a new window


@override_settings(ENVOY=IMMEDIATE)
def test_an_unknown_limit_is_an_error_naming_it_and_the_known_ones():
    with pytest.raises(InvalidArgumentError, match=r"no rate limit named 'nope' .* \(known: 'test-api'\)"):
        acquire("nope")


@override_settings(ENVOY=IMMEDIATE)
def test_a_job_over_the_limit_waits_as_pending_without_spending_a_retry():
    with at(T0 + 5):
        ids = [scheduler.schedule("rate_limited") for _ in range(3)]
    jobs = [Job.objects.get(pk=job_id) for job_id in ids]
    assert [job.status for job in jobs] == ["done", "done", "pending"]
    held = jobs[2]
    assert held.run_after == dt.datetime.fromtimestamp(T0 + 60, tz=dt.UTC)
    assert held.pending_reason.startswith("waiting for rate limit 'test-api' (2/m) until ")
    assert (held.attempts, held.error, held.claims) == (0, "", 0)
    assert not Step.objects.filter(job_id=held.pk).exists()  # nothing failed

    # The sweep runs it once it is due (immediate mode has no delayed queue).
    later = dt.datetime.fromtimestamp(T0 + 61, tz=dt.UTC)
    with at(T0 + 61), mock.patch("django.utils.timezone.now", return_value=later):
        scheduler.cleanup_orphaned_jobs()
    held.refresh_from_db()
    assert (held.status, held.pending_reason, held.run_after) == ("done", "", None)


@pytest.mark.usefixtures("redis_conn")
def test_in_rq_mode_the_job_is_sent_again_at_the_time_the_limit_frees():
    from envoy_django.testing.worker import drain

    with override_settings(ENVOY={**IMMEDIATE, "EXECUTION": "rq"}), at(T0 + 5):
        ids = [scheduler.schedule("rate_limited") for _ in range(3)]
        with mock.patch("envoy_django.dispatch.rq_queue.RQDispatcher.enqueue") as enqueue:
            drain()
    assert [Job.objects.get(pk=job_id).status for job_id in ids] == ["done", "done", "pending"]
    (jobs,), _ = enqueue.call_args
    assert jobs == [(ids[2], dt.datetime.fromtimestamp(T0 + 60, tz=dt.UTC), None)]


@override_settings(ENVOY=IMMEDIATE)
def test_a_cache_that_is_down_lets_the_call_through(caplog):
    with mock.patch.object(caches["default"], "add", side_effect=ConnectionError("cache down")):
        job_id = scheduler.schedule("rate_limited")
    assert Job.objects.get(pk=job_id).status == "done"
    assert "rate limit 'test-api': the cache is unreachable" in caplog.text


def test_checks_refuse_bad_rates_and_a_missing_cache_and_warn_of_an_unshared_one():
    with override_settings(ENVOY={"RATE_LIMITS": {"a": "60/m", "b": "lots"}}):
        assert [(e.id, type(e)) for e in check_envoy_settings()] == [("envoy_django.E010", Error)]
    with override_settings(ENVOY={"RATE_LIMITS": {"a": "60/m"}, "RATE_LIMIT_CACHE": "nope"}):
        assert [e.id for e in check_envoy_settings()] == ["envoy_django.E011"]
    with override_settings(ENVOY={"EXECUTION": "rq", "RATE_LIMITS": {"a": "60/m"}, "RATE_LIMIT_CACHE": "default"},
                           CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
        found = [(e.id, type(e)) for e in check_envoy_settings() if e.id.startswith("envoy_django.W")]
        assert found == [("envoy_django.W001", Warning)]

