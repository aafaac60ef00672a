"""Django's Tasks framework: ``django.tasks`` (Django 6+), or the ``django-tasks`` backport (Django 5.2)."""

from __future__ import annotations

from types import ModuleType

from envoy_django.exceptions import MissingExtraError


def tasks_module() -> ModuleType:
    """The module with ``task`` and ``task_backends``; ``MissingExtraError`` on Django 5.2 without the backport."""
    try:
        from django import tasks

        return tasks
    except ImportError:
        pass
    try:
        import django_tasks
    except ImportError as exc:
        raise MissingExtraError("tasks", "ENVOY['EXECUTION'] = 'tasks' on Django 5.2") from exc
    return django_tasks
