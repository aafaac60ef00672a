"""Django's Tasks framework: ``django.tasks`` (Django 6+), or the ``django-tasks`` backport (Django 5.2).

Both spell the same API under a different root, so envoy reaches every part
of it through here.
"""

from __future__ import annotations

from importlib import import_module
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
        raise MissingExtraError("tasks", "Django Tasks on Django 5.2") from exc
    return django_tasks


def tasks_part(name: str) -> ModuleType:
    """A submodule of the framework: ``"base"``, ``"exceptions"``, ``"signals"``, ``"backends.base"``."""
    return import_module(f"{tasks_module().__name__}.{name}")


def normalize_json_module() -> ModuleType:
    """Where ``normalize_json`` lives: the tuple-to-list rule every backend applies to args and results."""
    try:
        return import_module("django.utils.json")
    except ImportError:
        return import_module("django_tasks.utils")
