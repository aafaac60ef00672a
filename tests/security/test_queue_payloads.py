"""Redis carries job ids only, as JSON: a pickle put on the Envoy queue is refused, never unpickled.

Anyone who can write to Redis (or a producer left on RQ's default pickle
serializer) can put a message on the Envoy queue. The Envoy worker reads
messages with RQ's JSON serializer, so such a message must fail to
deserialize - and must not run the code a pickle can carry - while the
worker goes on with real jobs. Runs on fakeredis, and on real Redis with
REDIS_URL.
"""

from __future__ import annotations

import logging
import os
import pickle
import zlib
from pathlib import Path

import pytest
from django.test import override_settings
from rq import Queue
from rq.job import JobStatus as RQStatus
from rq.serializers import DefaultSerializer

from envoy_django import scheduler
from envoy_django.dispatch.rq import PERFORM, get_queue
from envoy_django.models import Job
from envoy_django.worker import get_worker

pytestmark = pytest.mark.django_db(transaction=True)


class CreatesFile:
    """Unpickling this object calls ``os.mkdir(path)``: a stand-in for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


@pytest.fixture
def rq_mode(redis_conn):
    with override_settings(ENVOY={"EXECUTION": "rq", "RETRY_BACKOFF": 0.0, "RETRY_BACKOFF_MAX": 0.0}):
        yield redis_conn


def put_pickle_on_the_envoy_queue(conn, marker: Path):
    """What a producer using RQ's default (pickle) serializer would enqueue: perform(<evil object>)."""
    evil = Queue(get_queue().name, connection=conn, serializer=DefaultSerializer)
    return evil.enqueue(PERFORM, CreatesFile(marker), job_id="envoy-evil-pickle")


def test_the_payload_is_live_when_unpickled(tmp_path):
    """The control: unpickling this payload does create the marker."""
    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps(CreatesFile(marker)))
    assert marker.exists()


def test_a_pickled_message_fails_without_being_unpickled(rq_mode, tmp_path, caplog):
    marker = tmp_path / "pwned"
    rq_job = put_pickle_on_the_envoy_queue(rq_mode, marker)
    raw = zlib.decompress(rq_mode.hget(rq_job.key, "data"))
    assert raw.startswith(b"\x80") and b"CreatesFile" not in raw and b"mkdir" in raw  # a pickle, opcode by opcode
    good = scheduler.schedule("hello", "envoy")  # a real job queued behind it

    with caplog.at_level(logging.WARNING, logger="rq.worker"):
        get_worker().work(burst=True, with_scheduler=False, logging_level="WARNING")

    assert not marker.exists(), "the worker unpickled a message from Redis"
    queue = get_queue()
    assert rq_job.id in queue.failed_job_registry.get_job_ids()
    assert queue.fetch_job(rq_job.id).get_status() == RQStatus.FAILED
    assert "DeserializationError" in caplog.text or "could not be deserialized" in caplog.text.lower(), caplog.text
    # The worker went on: the real job behind the bad message ran, and nothing else was created.
    assert scheduler.get_job(good).status == "done"
    assert Job.objects.count() == 1
    assert not marker.exists()


def test_envoy_messages_hold_json_only(rq_mode):
    job_id = scheduler.schedule("hello", {"secret": "stays in PostgreSQL"})
    (rq_job,) = get_queue().jobs
    raw = zlib.decompress(rq_mode.hget(rq_job.key, "data"))
    assert not raw.startswith(b"\x80")
    assert raw.decode() == f'["{PERFORM}", null, ["{job_id}"], {{}}]'
    assert b"secret" not in b"".join(v for v in rq_mode.hgetall(rq_job.key).values())
