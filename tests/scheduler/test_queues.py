"""register(..., queue=): every message of a flow goes to its queue; envoy_worker --queue serves several."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from envoy_django import StateFlow, register, scheduler
from envoy_django.exceptions import FlowDefinitionError
from envoy_django.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

RQ_MODE = {"EXECUTION": "rq"}


@pytest.fixture
def rq_mode(redis_conn):
    with override_settings(ENVOY=RQ_MODE):
        yield redis_conn


def counts() -> tuple[int, int]:
    from envoy_django.dispatch.rq_queue import get_queue

    return get_queue().count, get_queue("envoy-priority").count


def test_a_routed_flows_jobs_go_to_its_queue_and_others_stay_on_the_envoy_queue(rq_mode):
    from envoy_django.testing.worker import drain

    urgent = scheduler.schedule("urgent_child", 21)
    plain = scheduler.schedule("child", 1)
    many = scheduler.schedule_many([("urgent_child", 1), ("child", 2), ("urgent_child", 3)])
    assert counts() == (2, 3)
    drain(queue_names=["envoy-priority"])  # a worker on the priority queue only
    assert scheduler.get_job(urgent).output == 42 and scheduler.get_job(plain).status == "pending"
    drain()
    assert {job.status for job in Job.objects.filter(pk__in=[urgent, plain, *many])} == {"done"}


def test_the_sweep_sends_a_routed_job_again_to_its_queue(rq_mode):
    from envoy_django.dispatch.rq_queue import get_queue

    job_id = scheduler.schedule("urgent_child", 5)
    priority = get_queue("envoy-priority")
    priority.connection.delete(priority.key)  # the message is lost (FLUSHALL, a dead worker's registry...)
    Job.objects.filter(pk=job_id).update(enqueued_at=timezone.now() - dt.timedelta(minutes=5))
    assert scheduler.cleanup_orphaned_jobs()["requeued"] == 1
    assert counts() == (0, 1)


def test_one_worker_can_serve_several_queues(rq_mode):
    from envoy_django.testing.worker import drain

    ids = [scheduler.schedule("urgent_child", 1), scheduler.schedule("child", 2)]
    drain(queue_names=["envoy-priority", "envoy"])
    assert [scheduler.get_job(job_id).output for job_id in ids] == [2, 4]


@pytest.mark.parametrize("queue", ["", 5, "q" * 101])
def test_a_bad_queue_name_is_refused_at_register(queue):
    with pytest.raises(FlowDefinitionError, match="queue must be a queue name"):
        register("bad_queue", StateFlow([{"name": "A", "on_state": lambda ctx: ctx}]), queue=queue)


def test_the_system_check_names_a_flow_routed_to_a_missing_queue():
    from envoy_django import registry
    from envoy_django.checks import check_envoy_settings

    register("lost", StateFlow([{"name": "A", "on_state": lambda ctx: ctx}]), queue="nowhere")
    try:
        with override_settings(ENVOY=RQ_MODE):
            errors = [e for e in check_envoy_settings() if e.id == "envoy_django.E009"]
    finally:
        registry.unregister("lost")
    assert len(errors) == 1 and "flow 'lost' is registered with queue 'nowhere'" in errors[0].msg
