"""Plain ``@task`` functions on ``EnvoyBackend``, run by real ``envoy_worker`` processes.

The test process enqueues through Django's API in "rq" mode; the workers
(two processes, serving both of the backend's queues) run, retry and
recover the tasks, and the results are read back through ``get_result``.
"""

from __future__ import annotations

import os

import pytest

from envoy_django.dispatch.tasks_api import tasks_module
from envoy_django.models import Job
from envoy_django.testing.processes import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

Status = tasks_module().TaskResultStatus


def finished(result):
    result.refresh()
    return result.is_finished


def test_tasks_enqueue_run_in_envoy_worker_retry_and_return_results(workers, tmp_path):
    workers.start(concurrency=2, queues=["envoy", "envoy-priority"])
    results = {
        "add": tasks.add.enqueue(2, 3),
        "flaky": tasks.flaky.enqueue(1),
        "boom": tasks.boom.enqueue(),
        "async": tasks.async_double.enqueue(5),
        "priority": tasks.on_priority_queue.enqueue(1),
        "dies": tasks.dies_once.enqueue(str(tmp_path / "died")),
    }
    for name, result in results.items():
        wait_until(lambda result=result: finished(result), what=f"task {name} to finish", timeout=120)

    assert {name: result.status for name, result in results.items()} == {
        "add": Status.SUCCESSFUL, "flaky": Status.SUCCESSFUL, "boom": Status.FAILED,
        "async": Status.SUCCESSFUL, "priority": Status.SUCCESSFUL, "dies": Status.SUCCESSFUL,
    }
    assert results["add"].return_value == 5 and results["async"].return_value == 10
    assert results["priority"].return_value == "priority 1"
    flaky = results["flaky"]
    assert flaky.return_value["attempt"] == 2 and len(flaky.errors) == 1
    assert len(results["boom"].errors) == 4  # 1 + ENVOY["MAX_RETRIES"]
    assert (tmp_path / "died").exists() and results["dies"].return_value.startswith("survived in ")
    # Every attempt ran in a worker (one of them killed since), none in this process.
    for result in results.values():
        assert result.worker_ids and str(os.getpid()) not in {worker.split(":")[1] for worker in result.worker_ids}
    assert set(Job.objects.values_list("flow", flat=True)) == {"envoy.task", "envoy.task.envoy-priority"}
