"""The rq execution mode in-process: JSON messages carrying only the job id."""

import json
import zlib

import pytest
from django.test import override_settings

from envoy_django import scheduler
from envoy_django.dispatch.rq_queue import get_queue
from envoy_django.models import Job
from envoy_django.testing.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)

RQ_MODE = {"EXECUTION": "rq", "RETRY_BACKOFF": 0.0, "RETRY_BACKOFF_MAX": 0.0}


@pytest.fixture
def rq_mode(redis_conn):
    with override_settings(ENVOY=RQ_MODE):
        yield redis_conn


def test_schedule_enqueues_only_the_job_id_as_json(rq_mode):
    job_id = scheduler.schedule("hello", {"secret": "not in redis"})
    queue = get_queue()
    assert queue.count == 1
    rq_job = queue.jobs[0]
    payload = json.loads(zlib.decompress(rq_mode.hget(rq_job.key, "data")))
    assert payload == ["envoy_django.worker.perform", None, [job_id], {}]
    assert scheduler.get_job(job_id).status == "pending"
    drain()
    assert scheduler.get_job(job_id).status == "done"


def test_retry_waits_out_its_backoff_in_rqs_scheduled_registry(redis_conn):
    from tests.testapp import flows

    flows.calls.clear()
    with override_settings(ENVOY={**RQ_MODE, "RETRY_BACKOFF": 60.0, "RETRY_BACKOFF_MAX": 60.0}):
        job_id = scheduler.schedule("flaky", 1)
        drain()
        job = scheduler.get_job(job_id)
        assert (job.status, job.attempts) == ("pending", 1)
        assert "flaky failure 1" in job.error
        assert 30 <= (job.run_after - job.updated_at).total_seconds() <= 60
        scheduled = get_queue().scheduled_job_registry.get_job_ids()
        assert len(scheduled) == 1 and scheduled[0].startswith(f"envoy-{job_id}-")


def test_retry_runs_again_when_due(rq_mode):
    from tests.testapp import flows

    flows.calls.clear()
    job_id = scheduler.schedule("flaky", 1)
    drain()
    job = scheduler.get_job(job_id)
    assert (job.status, job.output) == ("done", 2)
    assert list(job.steps.order_by("pk").values_list("attempt", flat=True)) == [1, 2]


def test_nothing_is_enqueued_when_the_transaction_rolls_back(rq_mode):
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        scheduler.schedule("hello")
        raise RuntimeError("roll back")
    assert get_queue().count == 0
    assert not Job.objects.exists()


@pytest.mark.services
def test_the_envoy_queue_can_share_the_sites_django_redis_cache(redis_conn):
    """``RQ_QUEUES = {"envoy": {"USE_REDIS_CACHE": "default"}}``: one Redis connection setup for the site."""
    from django.conf import settings
    from django.core.cache import caches

    caches_setting = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": settings.REDIS_URL}}
    with override_settings(CACHES=caches_setting, RQ_QUEUES={"envoy": {"USE_REDIS_CACHE": "default"}}, ENVOY=RQ_MODE):
        caches["default"].set("site-key", "kept")
        job_id = scheduler.schedule("hello", "cache")
        assert get_queue().connection.connection_pool is caches["default"].client.get_client().connection_pool
        assert get_queue().count == 1
        drain()
        assert caches["default"].get("site-key") == "kept"
        caches["default"].delete("site-key")
    assert scheduler.get_job(job_id).output == "Hello cache! Bye!"
