"""``envoy_django.tasks.EnvoyBackend``: plain ``@task`` functions run as durable envoy jobs.

The tasks are in tests/testapp/tasks.py, on the ``"envoy"`` alias of the
test settings' ``TASKS``. Here envoy runs them in its embedded mode; the
worker-process version is tests/workers/test_tasks_backend_worker.py.
"""

from __future__ import annotations

import datetime as dt
import uuid
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from envoy_django import registry, scheduler
from envoy_django.checks import check_envoy_settings
from envoy_django.dispatch.tasks_api import tasks_module, tasks_part
from envoy_django.exceptions import InvalidArgumentError
from envoy_django.models import Job, Step
from envoy_django.tasks import InvalidTask
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = tasks_module()
exceptions = tasks_part("exceptions")
task_signals = tasks_part("signals")
backend = TASKS.task_backends["envoy"]


def test_a_task_runs_as_a_job_of_the_task_flow_and_its_result_comes_from_the_row():
    result = tasks.add.enqueue(2, 3)
    assert result.status == TASKS.TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5 and result.is_finished and result.attempts == 1
    assert result.enqueued_at <= result.started_at <= result.last_attempted_at <= result.finished_at
    assert (result.args, result.kwargs, result.backend) == ([2, 3], {}, "envoy")
    job = Job.objects.get(pk=result.id)
    assert (job.flow, job.status, job.output) == ("envoy.task", "done", 5)
    assert job.input["task"] == "tests.testapp.tasks.add"
    assert result.worker_ids == [Step.objects.get(job=job).worker]
    again = tasks.add.get_result(result.id)
    assert (again.status, again.return_value, again.task.func) == (result.status, 5, tasks.add.func)
    assert backend.get_result(result.id).id == result.id


def test_keyword_arguments_and_the_tuple_rule_of_django_backends():
    assert tasks.add.enqueue(a="x", b="y").return_value == "xy"
    assert tasks.pair.enqueue(4).return_value == [4, 4]  # JSON has no tuple, as on every backend


def test_enqueue_in_a_transaction_sends_the_job_after_the_commit_and_never_after_a_rollback():
    with transaction.atomic():
        result = tasks.add.enqueue(1, 1)
        assert result.status == TASKS.TaskResultStatus.READY
        assert Job.objects.get(pk=result.id).status == "pending"  # written with the caller's rows
    result.refresh()
    assert (result.status, result.return_value) == (TASKS.TaskResultStatus.SUCCESSFUL, 2)

    with pytest.raises(RuntimeError), transaction.atomic():
        lost = tasks.add.enqueue(1, 1)
        raise RuntimeError("the caller's transaction fails")
    with pytest.raises(exceptions.TaskResultDoesNotExist):
        tasks.add.get_result(lost.id)
    assert not Job.objects.filter(pk=lost.id).exists()


def test_a_failing_task_is_retried_with_envoys_backoff_and_keeps_every_error():
    result = tasks.flaky.enqueue(2)
    assert result.status == TASKS.TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 3, "id": result.id, "workers": 3}  # what its TaskContext said
    assert result.attempts == 3
    assert [error.exception_class for error in result.errors] == [tasks.TaskBoom, tasks.TaskBoom]
    assert "attempt 1 of" in result.errors[0].traceback and "attempt 2 of" in result.errors[1].traceback


def test_a_task_that_keeps_failing_fails_with_its_exception():
    with override_settings(ENVOY={"MAX_RETRIES": 1, "RETRY_BACKOFF": 0}):
        result = tasks.boom.enqueue()
    assert result.status == TASKS.TaskResultStatus.FAILED and result.is_finished
    assert [error.exception_class_path for error in result.errors] == ["tests.testapp.tasks.TaskBoom"] * 2
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.error_type) == ("failed", "TaskBoom")
    assert job.error == "on_state of state 'task' raised TaskBoom: always"


def test_a_return_value_json_cannot_hold_fails_the_task_at_once_naming_it():
    result = tasks.not_json.enqueue()
    assert result.status == TASKS.TaskResultStatus.FAILED
    assert len(result.errors) == 1  # no retry: it would return the same
    job = Job.objects.get(pk=result.id)
    assert "task tests.testapp.tasks.not_json" in job.error and str(job.pk) in job.error


def test_async_tasks_and_the_async_api():
    assert tasks.async_double.enqueue(21).return_value == 42
    result = async_to_sync(tasks.add.aenqueue)(20, 22)
    assert result.return_value == 42
    assert async_to_sync(tasks.add.aget_result)(result.id).return_value == 42


def test_run_after_defers_the_job_and_the_sweep_runs_it_when_due():
    later = timezone.now() + dt.timedelta(hours=1)
    result = tasks.add.using(run_after=later).enqueue(1, 2)
    assert result.status == TASKS.TaskResultStatus.READY and result.task.run_after == later
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.run_after) == ("pending", later)
    with mock.patch("django.utils.timezone.now", return_value=later + dt.timedelta(seconds=1)):
        scheduler.cleanup_orphaned_jobs()  # immediate mode has no delayed queue: the sweep runs it when due
    assert tasks.add.get_result(result.id).return_value == 3


def test_a_queue_name_is_the_django_rq_queue_of_that_name():
    result = tasks.on_priority_queue.enqueue(7)
    assert result.return_value == "priority 7" and result.task.queue_name == "envoy-priority"
    assert Job.objects.get(pk=result.id).flow == "envoy.task.envoy-priority"
    assert registry.queue_of("envoy.task.envoy-priority") == "envoy-priority"
    assert registry.queue_of("envoy.task") is None  # ENVOY["QUEUE"]


def test_in_rq_mode_the_message_goes_to_the_tasks_queue(redis_conn):
    import django_rq

    with override_settings(ENVOY={"EXECUTION": "rq"}):
        default = tasks.add.enqueue(1, 2)
        urgent = tasks.on_priority_queue.enqueue(1)
    assert default.status == urgent.status == TASKS.TaskResultStatus.READY
    assert len(django_rq.get_queue("envoy")) == 1 and len(django_rq.get_queue("envoy-priority")) == 1


def test_signals_go_out_after_the_commit_in_order():
    seen = []

    def record(signal_name):
        def receiver(sender, task_result, **kwargs):
            seen.append((signal_name, task_result.status, sender))
        return receiver

    receivers = {name: record(name) for name in ("enqueued", "started", "finished")}
    for name, receiver in receivers.items():
        getattr(task_signals, f"task_{name}").connect(receiver)
    try:
        with transaction.atomic():
            tasks.add.enqueue(1, 2)
            assert seen == []  # nothing is said of a row that may roll back
        with override_settings(ENVOY={"MAX_RETRIES": 0}):
            tasks.boom.enqueue()
    finally:
        for name, receiver in receivers.items():
            getattr(task_signals, f"task_{name}").disconnect(receiver)
    assert [(name, status) for name, status, _ in seen] == [
        ("enqueued", "READY"), ("started", "RUNNING"), ("finished", "SUCCESSFUL"),
        ("enqueued", "READY"), ("started", "RUNNING"), ("finished", "FAILED"),
    ]
    assert {sender for _, _, sender in seen} == {type(backend)}


def test_a_cancelled_task_is_failed_for_django():
    result = tasks.add.using(run_after=timezone.now() + dt.timedelta(hours=1)).enqueue(1, 2)
    scheduler.cancel_job(result.id)
    result.refresh()
    assert result.status == TASKS.TaskResultStatus.FAILED and result.finished_at is not None
    assert [error.exception_class_path for error in result.errors] == ["envoy_django.exceptions.EnvoyError"]


def test_bad_input_is_refused_naming_the_task_and_writes_nothing():
    with pytest.raises(InvalidArgumentError, match="task tests.testapp.tasks.add: arguments must be JSON"):
        tasks.add.enqueue({1, 2}, 3)
    with pytest.raises(InvalidTask, match="tests.testapp.tasks._hidden"):
        tasks.renamed.enqueue()
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=5)
    assert not Job.objects.exists()


def test_get_result_of_what_is_not_a_task_job():
    for result_id in (str(uuid.uuid4()), "not-a-uuid", scheduler.schedule("hello")):
        with pytest.raises(exceptions.TaskResultDoesNotExist):
            backend.get_result(result_id)
    with pytest.raises(exceptions.TaskResultMismatch):
        tasks.boom.get_result(tasks.add.enqueue(1, 1).id)


def test_the_backend_declares_what_it_supports():
    assert (backend.supports_defer, backend.supports_async_task, backend.supports_get_result,
            backend.supports_priority) == (True, True, True, False)


def test_envoys_own_messages_cannot_go_to_an_envoy_backend():
    with override_settings(TASKS={"default": {"BACKEND": "envoy_django.tasks.EnvoyBackend"}},
                           ENVOY={"EXECUTION": "tasks"}):
        errors = check_envoy_settings()
    assert [e.id for e in errors] == ["envoy_django.E015"]


def test_a_queue_the_backend_does_not_list_is_refused_when_the_task_is_defined():
    with override_settings(TASKS={"envoy": {"BACKEND": "envoy_django.tasks.EnvoyBackend", "QUEUES": []}}):
        with pytest.raises(InvalidTask, match="Queue 'elsewhere'"):
            TASKS.task(backend="envoy", queue_name="elsewhere")(tasks._hidden)
        assert TASKS.task_backends["envoy"].queues == {"default"}


def test_redis_down_after_the_commit_leaves_the_task_to_the_sweep(redis_conn, monkeypatch):
    from redis.exceptions import ConnectionError

    from envoy_django.dispatch import rq_queue
    from envoy_django.testing.worker import drain

    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    with override_settings(ENVOY={"EXECUTION": "rq", "LEASE_SECONDS": 30}):
        with monkeypatch.context() as patched:
            patched.setattr(rq_queue, "get_queue", down)
            result = tasks.add.enqueue(20, 22)
        assert result.status == TASKS.TaskResultStatus.READY  # committed, not lost
        later = timezone.now() + dt.timedelta(minutes=5)
        with mock.patch("django.utils.timezone.now", return_value=later):
            assert scheduler.cleanup_orphaned_jobs()["requeued"] == 1  # the sweep sends it
        drain()
    result.refresh()
    assert (result.status, result.return_value) == (TASKS.TaskResultStatus.SUCCESSFUL, 42)


def test_a_raising_task_signal_receiver_stops_neither_the_enqueue_nor_the_task(caplog):
    def broken(sender, task_result, **kwargs):
        raise RuntimeError("a receiver's bug")

    task_signals.task_enqueued.connect(broken)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_signals.task_enqueued.disconnect(broken)
    assert (result.status, result.return_value) == (TASKS.TaskResultStatus.SUCCESSFUL, 3)
    assert "a receiver's bug" in caplog.text
