"""Redis content never executes: not in a worker, not in django-rq's dashboard.

Anyone who can write to Redis can put a message on the Envoy queue. Found
on main before this was fixed: the dashboard built the Envoy queue with
RQ's pickle serializer and unpickled its messages in the web process for
any staff user; and the worker ran any function a JSON message named, and
imported and called a success callback it named. Each crafted message here
would create a marker directory if it ran; none may.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from rq import Callback, Queue
from rq.job import JobStatus as RQStatus
from rq.serializers import DefaultSerializer, JSONSerializer

from envoy_django import scheduler
from envoy_django.checks import check_envoy_settings
from envoy_django.dispatch.rq_queue import PERFORM, get_queue
from envoy_django.dispatch.rq_settings import JSON_SERIALIZER
from envoy_django.models import Job
from envoy_django.worker import get_worker
from tests.support import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

VALID_ID = "0e8ae7d6-5e91-4a0e-a5f2-6f0a4b0e1e11"


class CreatesDirectory:
    """Unpickling this object calls ``os.mkdir(path)``: a stand-in for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


@pytest.fixture
def rq_mode(redis_conn):
    with override_settings(ENVOY={"EXECUTION": "rq", "RETRY_BACKOFF": 0.0, "RETRY_BACKOFF_MAX": 0.0}):
        yield redis_conn


def _json_queue(conn) -> Queue:
    return Queue(get_queue().name, connection=conn, serializer=JSONSerializer)


def crafted_messages(conn, marker: Path) -> dict[str, str]:
    """One message of each kind a worker must refuse; each would create ``marker`` (or worse) if run."""
    json_queue = _json_queue(conn)
    pickle_queue = Queue(get_queue().name, connection=conn, serializer=DefaultSerializer)
    finished = json_queue.enqueue("os.getcwd")
    json_queue.remove(finished)
    finished.set_status(RQStatus.FINISHED)
    return {
        "pickle": pickle_queue.enqueue(PERFORM, CreatesDirectory(marker)).id,
        "another function": json_queue.enqueue("os.mkdir", str(marker)).id,
        "a success callback": json_queue.enqueue(PERFORM, VALID_ID, on_success=Callback("os.abort")).id,
        "a failure callback": json_queue.enqueue(PERFORM, VALID_ID, on_failure=Callback("os.abort")).id,
        "keyword arguments": json_queue.enqueue_call(PERFORM, args=(), kwargs={"job_id": VALID_ID}).id,
        "two arguments": json_queue.enqueue(PERFORM, VALID_ID, str(marker)).id,
        "an argument that is not a job id": json_queue.enqueue(PERFORM, str(marker)).id,
        "a dependency": json_queue.enqueue(PERFORM, VALID_ID, depends_on=finished).id,
    }


def test_the_payloads_are_live(tmp_path):
    """The control: unpickling the pickle, or calling what the JSON names, does create the marker."""
    import pickle

    pickle.loads(pickle.dumps(CreatesDirectory(tmp_path / "unpickled")))
    assert (tmp_path / "unpickled").exists()


def test_the_worker_refuses_and_removes_every_message_that_is_not_envoys_own(rq_mode, tmp_path, caplog):
    marker = tmp_path / "pwned"
    refused = crafted_messages(rq_mode, marker)
    good = scheduler.schedule("hello", "envoy")  # a real job queued behind them

    with caplog.at_level(logging.ERROR, logger="envoy_django.worker"):
        get_worker().work(burst=True, with_scheduler=False, logging_level="WARNING")

    assert not marker.exists(), "a worker ran a message from Redis"
    queue = get_queue()
    for why, rq_id in refused.items():
        assert not rq_mode.exists(f"rq:job:{rq_id}"), f"the message with {why} was kept"
        assert any(rq_id in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records), why
    assert queue.count == 0 and queue.failed_job_registry.count == 0 and queue.started_job_registry.count == 0
    assert rq_mode.llen(queue.intermediate_queue_key) == 0
    assert scheduler.get_job(good).status == "done"
    assert Job.objects.count() == 1


@pytest.mark.services
def test_envoy_worker_burst_refuses_them_in_a_real_process(workers, tmp_path):
    marker = tmp_path / "pwned"
    refused = crafted_messages(get_queue().connection, marker)
    good = scheduler.schedule("hello", "envoy")
    env = workers.env
    burst = subprocess.run(
        [sys.executable, "-m", "django", "envoy_worker", "--burst", "--settings", "tests.settings", "-v", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert burst.returncode == 0, burst.stderr
    assert not marker.exists()
    for rq_id in refused.values():
        assert f"refused RQ message {rq_id}" in burst.stderr
        assert not get_queue().connection.exists(f"rq:job:{rq_id}")
    assert scheduler.get_job(good).status == "done"


def test_envoy_messages_hold_json_only(rq_mode):
    job_id = scheduler.schedule("hello", {"secret": "stays in PostgreSQL"})
    (rq_job,) = get_queue().jobs
    raw = zlib.decompress(rq_mode.hget(rq_job.key, "data"))
    assert not raw.startswith(b"\x80")
    assert raw.decode() == f'["{PERFORM}", null, ["{job_id}"], {{}}]'
    assert b"secret" not in b"".join(v for v in rq_mode.hgetall(rq_job.key).values())


# --- django-rq's dashboard --------------------------------------------------------------


def test_the_app_gives_the_envoy_queue_rqs_json_serializer():
    assert settings.RQ_QUEUES["envoy"]["SERIALIZER"] == JSON_SERIALIZER
    import django_rq

    assert django_rq.get_queue("envoy").serializer is JSONSerializer
    with override_settings(RQ_QUEUES={"envoy": {"URL": "redis://127.0.0.1:6379/9"}}):
        assert settings.RQ_QUEUES["envoy"]["SERIALIZER"] == JSON_SERIALIZER  # and when settings change


def test_a_site_that_sets_another_serializer_for_the_envoy_queue_gets_an_error():
    queues = {"envoy": {"URL": "redis://127.0.0.1:6379/9", "SERIALIZER": "rq.serializers.DefaultSerializer"},
              "envoy-priority": {"URL": "redis://127.0.0.1:6379/9"}}  # the test flows' other queue
    with override_settings(RQ_QUEUES=queues, ENVOY={"EXECUTION": "rq"}):
        (error,) = check_envoy_settings()
    assert error.id == "envoy_django.E007" and "DefaultSerializer" in error.msg and "JSON" in error.hint


@pytest.fixture
def staff_client(django_user_model, client):
    """A staff user with no Envoy permission: 403 on the job list, yet let into django-rq's dashboard."""
    user = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    client.force_login(user)
    assert client.get("/admin/envoy_django/job/").status_code == 403
    return client


def test_the_dashboard_never_unpickles_the_envoy_queue(rq_mode, staff_client, tmp_path):
    marker = tmp_path / "pwned"
    pickle_queue = Queue(get_queue().name, connection=rq_mode, serializer=DefaultSerializer)
    queued = pickle_queue.enqueue(PERFORM, CreatesDirectory(marker))
    failed = pickle_queue.enqueue(PERFORM, CreatesDirectory(marker))
    pickle_queue.remove(failed)
    pickle_queue.failed_job_registry.add(failed, ttl=3600, exc_string="planted")
    index = list(settings.RQ_QUEUES).index("envoy")
    base = f"/admin/django_rq/dashboard/queues/{index}"
    pages = [f"{base}/", f"{base}/failed/", f"{base}/{queued.id}/", f"{base}/{failed.id}/"]
    for page in pages:
        try:
            staff_client.get(page)
        except Exception:
            pass  # a page may fail to decode the message: what matters is that nothing ran
        assert not marker.exists(), f"opening {page} unpickled a message from Redis"
    # The dashboard's own pages were reachable (the test would prove nothing otherwise).
    assert staff_client.get(f"{base}/").status_code == 200


def test_the_job_rows_are_untouched_by_refused_messages(rq_mode, tmp_path):
    job_id = scheduler.schedule("family", {"children": [1]})
    get_worker().work(burst=True, with_scheduler=False, logging_level="WARNING")
    before = Job.objects.get(pk=job_id)
    json_queue = _json_queue(rq_mode)
    json_queue.enqueue(PERFORM, str(job_id), on_success=Callback("os.abort"))
    json_queue.enqueue("envoy_django.scheduler.cancel_job", str(job_id))
    get_worker().work(burst=True, with_scheduler=False, logging_level="WARNING")
    after = Job.objects.get(pk=job_id)
    assert (after.status, after.updated_at, after.claims) == (before.status, before.updated_at, before.claims)
    assert uuid.UUID(str(after.pk)) == uuid.UUID(job_id)

