"""Counters from real worker processes, summed by the endpoint: prometheus_client's multiprocess mode.

Two supervisors of two worker processes each run in turn, the first
stopped before the second starts: the scrape sums every process's file,
the stopped ones' included, so a restart loses no count.
"""

from __future__ import annotations

import pytest

from envoy_django import scheduler
from envoy_django.models import Job
from envoy_django.testing.processes import wait_until
from tests.observability.support import scrape, value

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def all_done(ids):
    return Job.objects.filter(pk__in=ids, status="done").count() == len(ids)


def test_counters_from_two_generations_of_worker_processes_are_summed(workers, tmp_path, monkeypatch):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))  # this process's endpoint reads the files

    workers.start(concurrency=2, extra_env=env, name="first")
    first = [scheduler.schedule("ten_states") for _ in range(6)]
    wait_until(lambda: all_done(first), what="the first supervisor's jobs")
    workers.stop()  # a restart: these processes are gone, their counts stay

    workers.start(concurrency=2, extra_env=env, name="second")
    second = [scheduler.schedule("ten_states") for _ in range(6)] + [scheduler.schedule("hello")]
    wait_until(lambda: all_done(second), what="the second supervisor's jobs")

    samples = scrape()
    assert value(samples, "envoy_transitions_total", flow="ten_states") == 120
    assert value(samples, "envoy_transition_seconds_count", flow="ten_states") == 120
    assert value(samples, "envoy_jobs_finished_total", flow="ten_states", status="done") == 12
    assert value(samples, "envoy_schedule_to_start_seconds_count", flow="ten_states") == 12
    assert value(samples, "envoy_transitions_total", flow="hello") == 2
    writers = {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}
    ran_in = {owner.split(":")[1] for owner in Job.objects.filter(pk__in=first + second)
              .values_list("steps__worker", flat=True)}
    assert len(ran_in) >= 2 and ran_in <= writers  # every process that ran a step wrote its counts
    wait_until(lambda: value(scrape(), "envoy_workers") == 2, what="the two live worker processes")
