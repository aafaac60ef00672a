"""Plain Django ``@task`` functions, run as envoy jobs by the ``"envoy"`` backend (an ``EnvoyBackend``)."""

from __future__ import annotations

from envoy_django.dispatch.tasks_api import tasks_module

task = tasks_module().task


class TaskBoom(Exception):
    """What ``boom`` raises: a class of the site's own, so its path is worth checking."""


@task(backend="envoy")
def add(a, b):
    return a + b


@task(backend="envoy", takes_context=True)
def flaky(context, fails):
    """Fail the first ``fails`` attempts, then report which attempt succeeded."""
    if context.attempt <= fails:
        raise TaskBoom(f"attempt {context.attempt} of {context.task_result.id} fails")
    return {"attempt": context.attempt, "id": context.task_result.id, "workers": len(context.task_result.worker_ids)}


@task(backend="envoy")
def boom():
    raise TaskBoom("always")


@task(backend="envoy")
async def async_double(value):
    return value * 2


@task(backend="envoy")
def pair(value):
    return (value, value)  # a tuple: stored as the list Django's backends make of it


@task(backend="envoy")
def not_json():
    return {1, 2}


@task(backend="envoy", queue_name="envoy-priority")
def on_priority_queue(value):
    return f"priority {value}"


def _hidden():
    return "never"


renamed = task(backend="envoy")(_hidden)  # its module path leads to the function, not to this Task


@task(backend="envoy")
def dies_once(marker):
    """Kill the worker process running it the first time (SIGKILL: nothing is committed), then succeed."""
    import os
    import signal

    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return f"survived in {os.getpid()}"
