"""``EnvoyBackend``: a Django Tasks backend that runs every ``@task`` function as a durable envoy job.

``TASKS = {"default": {"BACKEND": "envoy_django.tasks.EnvoyBackend"}}``
and a plain ``@task`` gets what a flow gets: the job row is written in the
caller's transaction and sent to a worker only after it commits; the run
is claimed under a lease, retried with envoy's backoff, recovered if its
worker dies, and visible (and retryable) in the admin with its history.

Each task is a job of a built-in one-state flow, ``envoy.task`` (for the
``"default"`` queue) or ``envoy.task.<queue>`` (on the django-rq queue of
that name). The job's input says which task and with what arguments; its
output is the return value; its failed Step rows are the ``errors``. The
result id is the job id, so ``get_result`` works from any process.

Priorities are not supported (``supports_priority = False``, so the
framework refuses a task with one): envoy's messages go first in, first
out per queue; a site orders work by queue (``envoy_worker --queue high
--queue default``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from envoy_django import signals as envoy_signals
from envoy_django.dispatch.tasks_api import normalize_json_module, tasks_module, tasks_part
from envoy_django.exceptions import InvalidArgumentError
from envoy_django.flow import Context, StateFlow
from envoy_django.flow.values import short_repr
from envoy_django.models import Job, JobStatus, Step
from envoy_django.scheduler.current import Running, running_job

_base = tasks_part("base")
_exceptions = tasks_part("exceptions")
_signals = tasks_part("signals")
BaseTaskBackend: Any = tasks_part("backends.base").BaseTaskBackend
normalize_json = normalize_json_module().normalize_json
InvalidTask: type[Exception] = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError

TASK_FLOW = "envoy.task"
DEFAULT_QUEUE = "default"

_STATUS = {
    JobStatus.PENDING: "READY",  # enqueued, deferred, or waiting out a retry's backoff
    JobStatus.RUNNING: "RUNNING",
    JobStatus.BLOCKING: "RUNNING",
    JobStatus.DONE: "SUCCESSFUL",
    JobStatus.FAILED: "FAILED",
    JobStatus.CANCELLED: "FAILED",  # Django has no "cancelled": it never ran to the end
}


def flow_name(queue_name: str) -> str:
    """The flow that runs tasks of ``queue_name``."""
    return TASK_FLOW if queue_name == DEFAULT_QUEUE else f"{TASK_FLOW}.{queue_name}"


def is_task_flow(name: str) -> bool:
    return name == TASK_FLOW or name.startswith(TASK_FLOW + ".")


class EnvoyBackend(BaseTaskBackend):
    """Run ``@task`` functions as envoy jobs, on whatever ``ENVOY["EXECUTION"]`` the site uses."""

    supports_defer = True  # run_after is the job's run_after
    supports_async_task = True  # a coroutine function runs through async_to_sync, in the worker
    supports_get_result = True  # the job row, from any process
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        from envoy_django.registry import register

        # Each queue is a flow every process must register at start-up, so the queues are a closed
        # list: QUEUES (or ["default"]); an empty QUEUES, "any queue" for other backends, means "default".
        queues: set[str] = set(params.get("QUEUES") or [DEFAULT_QUEUE])
        self.queues = queues
        for queue in sorted(queues):
            register(flow_name(queue), task_flow, queue=None if queue == DEFAULT_QUEUE else queue)
        _connect_signals()

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Write the job in the caller's transaction; its worker gets it after the commit."""
        from envoy_django.scheduler import schedule

        self.validate_task(task)
        _check_importable(task)
        try:
            call = normalize_json({"args": list(args), "kwargs": dict(kwargs)})
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"task {task.module_path}: arguments must be JSON values (str, int, float, bool, None, "
                f"lists and dicts with str keys): {exc}") from exc
        spec = {
            "task": task.module_path,
            "backend": self.alias,
            "queue_name": task.queue_name,
            "run_after": task.run_after.isoformat() if task.run_after else None,
            **call,
        }
        job_id = schedule(flow_name(task.queue_name), spec, run_at=task.run_after)
        return self.get_result(job_id)

    def get_result(self, result_id: Any) -> Any:
        try:
            job = Job.objects.get(pk=uuid.UUID(str(result_id)))
        except (ValueError, Job.DoesNotExist):
            job = None
        if job is None or not is_task_flow(job.flow):
            raise _exceptions.TaskResultDoesNotExist(result_id)
        return task_result(job)


def _check_importable(task: Any) -> None:
    """A worker finds the task by its module path: refuse one that the path does not lead back to.

    Checked at enqueue, not in ``validate_task``: that runs while ``@task``
    decorates, before the module has the name.
    """
    try:
        found = import_string(task.module_path)
    except ImportError:
        found = None
    if getattr(found, "func", None) is not task.func:
        raise InvalidTask(
            f"task {task.module_path}: a worker imports a task by its module path, which does not lead to "
            "this one (define the task at module level under its own name)")


def task_result(job: Job, running: Running | None = None) -> Any:
    """The ``TaskResult`` of a task job: its status, return value, errors and attempts, from the rows."""
    spec: dict[str, Any] = job.input or {}
    task = _task_of(spec)
    attempts = list(Step.objects.filter(job_id=job.pk).order_by("id").values_list("worker", "started_at", "traceback",
                                                                                  "error"))
    worker_ids = [worker for worker, _, _, _ in attempts]
    last_attempted_at = attempts[-1][1] if attempts else None
    errors = [
        _base.TaskError(exception_class_path=exception_path(traceback), traceback=traceback)
        for _, _, traceback, error in attempts if error
    ]
    status = _STATUS[JobStatus(job.status)]
    if running is not None:
        worker_ids.append(running.owner)
        last_attempted_at = running.started_at
        status = "RUNNING"
    if status == "FAILED" and not errors:  # cancelled, or failed by an operator: no attempt of it raised
        errors.append(_base.TaskError(exception_class_path="envoy_django.exceptions.EnvoyError",
                                      traceback=f"{job.error_type or job.status}: {job.error}".strip()))
    result = _base.TaskResult(
        task=task,
        id=str(job.pk),
        status=_base.TaskResultStatus(status),
        enqueued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        last_attempted_at=last_attempted_at,
        args=spec["args"],
        kwargs=spec["kwargs"],
        backend=spec["backend"],
        errors=errors,
        worker_ids=worker_ids,
    )
    if status == "SUCCESSFUL":
        object.__setattr__(result, "_return_value", job.output)
    return result


def exception_path(traceback: str) -> str:
    """The dotted path of the exception a formatted traceback ends with (``builtins.`` for a built-in)."""
    lines = [line for line in traceback.splitlines() if line.strip() and not line[0].isspace()]
    name = lines[-1].split(":", 1)[0].strip() if lines else "Exception"
    return name if "." in name else f"builtins.{name}"


def _task_of(spec: dict[str, Any]) -> Any:
    """The Task object a job runs, as it was enqueued (queue, run_after, backend)."""
    task = import_string(spec["task"])
    run_after = dt.datetime.fromisoformat(spec["run_after"]) if spec.get("run_after") else None
    return task.using(backend=spec["backend"], queue_name=spec["queue_name"], run_after=run_after)


def _perform(ctx: Context) -> Context:
    """The one state: call the task; its return value is the job's output."""
    running = running_job()
    if running is None:  # only the executor runs this flow's handlers
        raise RuntimeError("an envoy.task job runs only in envoy's executor")
    spec = ctx.input()
    task = _task_of(spec)
    result = task_result(running.job, running)
    _signals.task_started.send(type(task.get_backend()), task_result=result)
    if task.takes_context:
        value = task.call(_base.TaskContext(task_result=result), *spec["args"], **spec["kwargs"])
    else:
        value = task.call(*spec["args"], **spec["kwargs"])
    try:
        ctx.output(normalize_json(value))
    except (TypeError, ValueError) as exc:  # an EnvoyError: failed at once, running it again returns the same
        raise InvalidArgumentError(
            f"task {spec['task']} (job {running.job.pk}) returned {short_repr(value)}, which is not a JSON value: "
            f"{exc}") from exc
    return ctx


task_flow = StateFlow([{"name": "task", "on_state": _perform, "router": {"next": None}}])


def register_configured_backends() -> None:
    """At start-up, in every process: make the flows of each configured EnvoyBackend runnable here.

    A backend is otherwise built on first use, and a worker that never
    enqueues a task would not know the flows of the tasks it is sent.
    """
    for alias, options in (getattr(settings, "TASKS", None) or {}).items():
        try:
            backend_class = import_string(options.get("BACKEND", ""))
        except ImportError:
            continue  # Django's own check names it
        if isinstance(backend_class, type) and issubclass(backend_class, EnvoyBackend):
            tasks_module().task_backends[alias]  # built, it registers its flows


def _connect_signals() -> None:
    envoy_signals.job_scheduled.connect(_enqueued, dispatch_uid="envoy_django.tasks.enqueued")
    for signal in (envoy_signals.job_done, envoy_signals.job_failed, envoy_signals.job_cancelled):
        signal.connect(_finished, dispatch_uid=f"envoy_django.tasks.finished.{id(signal)}")


def _send(signal: Any, job: Job) -> None:
    if not is_task_flow(job.flow) or not signal.has_listeners():
        return
    result = task_result(job)
    signal.send(type(result.task.get_backend()), task_result=result)


def _enqueued(sender: Any, job: Job, **kwargs: Any) -> None:
    """Django's ``task_enqueued``, once the job's row is committed (``job`` is that row, as written)."""
    _send(_signals.task_enqueued, job)


def _finished(sender: Any, job: Job, **kwargs: Any) -> None:
    """Django's ``task_finished``, once the job's end is committed: read again, with all the end wrote."""
    if is_task_flow(job.flow):  # first: every job's end comes here, and only a task's needs the read
        _send(_signals.task_finished, Job.objects.get(pk=job.pk))
