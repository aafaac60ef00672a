"""System checks for ENVOY settings (``manage.py check``)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks

from envoy_django.conf import DEFAULTS, NUMERIC_KEYS
from envoy_django.dispatch.rq_settings import JSON_SERIALIZER, envoy_queue_entry, is_json_serializer


@checks.register()
def check_envoy_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    user = getattr(settings, "ENVOY", None) or {}
    if not isinstance(user, dict):
        return [checks.Error("ENVOY must be a dict.", hint="ENVOY = {'EXECUTION': 'rq', ...}", id="envoy_django.E001")]
    for key in user:
        if key not in DEFAULTS:
            errors.append(checks.Error(
                f"Unknown ENVOY setting {key!r}.",
                hint=f"Known settings: {', '.join(DEFAULTS)}.",
                id="envoy_django.E002",
            ))
    for key in NUMERIC_KEYS:
        value = user.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            errors.append(checks.Error(
                f"ENVOY[{key!r}] must be a non-negative number, got {value!r}.",
                hint=f"The default is {DEFAULTS[key]!r}.",
                id="envoy_django.E003",
            ))
    execution = user.get("EXECUTION", DEFAULTS["EXECUTION"])
    if execution not in ("rq", "immediate", "tasks"):
        errors.append(checks.Error(
            f"ENVOY['EXECUTION'] must be 'rq', 'immediate' or 'tasks', got {execution!r}.",
            hint="'immediate' runs jobs in the calling process; 'rq' needs envoy_worker processes; "
                 "'tasks' uses the site's Django Tasks backend.",
            id="envoy_django.E004",
        ))
    if execution == "tasks":
        errors += _tasks_errors(user)
    errors += _metrics_errors(user)
    if user.get("PREPARED_STATEMENTS") not in (None, True, False):
        errors.append(checks.Error(
            f"ENVOY['PREPARED_STATEMENTS'] must be None, True or False, got {user['PREPARED_STATEMENTS']!r}.",
            hint="None (the default) prepares unless DATABASES sets DISABLE_SERVER_SIDE_CURSORS.",
            id="envoy_django.E019",
        ))
    errors += _stream_errors(user)
    queue = user.get("QUEUE", DEFAULTS["QUEUE"])
    if execution == "rq" and queue not in (getattr(settings, "RQ_QUEUES", None) or {}):
        errors.append(checks.Error(
            f"ENVOY['EXECUTION'] is 'rq' but RQ_QUEUES has no queue named {queue!r}.",
            hint=f"Add RQ_QUEUES = {{{queue!r}: {{'URL': 'redis://localhost:6379/0'}}}} or set ENVOY['QUEUE'].",
            id="envoy_django.E005",
        ))
    if execution == "rq" and not apps.is_installed("django_rq"):
        errors.append(checks.Error(
            "ENVOY['EXECUTION'] is 'rq' but 'django_rq' is not in INSTALLED_APPS.",
            hint="INSTALLED_APPS += ['django_rq'].",
            id="envoy_django.E006",
        ))
    if execution == "rq":
        from envoy_django.registry import routed_queues

        for flow, routed in sorted(routed_queues().items()):
            if routed not in (getattr(settings, "RQ_QUEUES", None) or {}):
                errors.append(checks.Error(
                    f"flow {flow!r} is registered with queue {routed!r}, which RQ_QUEUES does not have.",
                    hint=f"Add RQ_QUEUES[{routed!r}] and run envoy_worker --queue {routed} for it.",
                    id="envoy_django.E009",
                ))
    retention = user.get("RETENTION")
    if retention is not None:
        from envoy_django.exceptions import EnvoyError
        from envoy_django.scheduler.retention import parse_age

        try:
            parse_age(retention, "ENVOY['RETENTION']")
        except EnvoyError as exc:
            errors.append(checks.Error(str(exc), hint="None (the default) keeps every row.", id="envoy_django.E008"))
    errors += _rate_limit_errors(user)
    entry = envoy_queue_entry()
    if entry is not None and not is_json_serializer(entry.get("SERIALIZER", JSON_SERIALIZER)):
        errors.append(checks.Error(
            f"RQ_QUEUES[{queue!r}] sets SERIALIZER {entry['SERIALIZER']!r}; the Envoy queue must use "
            "RQ's JSON serializer, or django-rq (its dashboard included) unpickles what Redis holds.",
            hint=f"Remove SERIALIZER from RQ_QUEUES[{queue!r}] (envoy-django sets it) or set it to "
                 f"{JSON_SERIALIZER!r}; give other work a queue of its own.",
            id="envoy_django.E007",
        ))
    return errors


def _rate_limit_errors(user: dict[str, Any]) -> list[checks.CheckMessage]:
    from envoy_django.exceptions import EnvoyError
    from envoy_django.ratelimits import Rate

    limits = user.get("RATE_LIMITS", {})
    hint = "ENVOY['RATE_LIMITS'] = {'openai': '60/m'}: calls / [count] s, m, h or d."
    if not isinstance(limits, dict):
        return [checks.Error(f"ENVOY['RATE_LIMITS'] must be a dict, got {type(limits).__name__}.", hint=hint,
                             id="envoy_django.E010")]
    errors: list[checks.CheckMessage] = []
    for name, text in limits.items():
        try:
            Rate.parse(text, f"ENVOY['RATE_LIMITS'][{name!r}]")
        except EnvoyError as exc:
            errors.append(checks.Error(str(exc), hint=hint, id="envoy_django.E010"))
    alias = user.get("RATE_LIMIT_CACHE", DEFAULTS["RATE_LIMIT_CACHE"])
    if limits and alias not in (getattr(settings, "CACHES", None) or {"default": {}}):
        errors.append(checks.Error(
            f"ENVOY['RATE_LIMIT_CACHE'] is {alias!r}, which CACHES does not have.",
            hint="Name a cache every worker shares (django-redis in production).", id="envoy_django.E011"))
    backend = str(((getattr(settings, "CACHES", None) or {}).get(alias) or {}).get("BACKEND", ""))
    if limits and user.get("EXECUTION") == "rq" and backend.endswith(("LocMemCache", "DummyCache")):
        errors.append(checks.Warning(
            f"ENVOY['RATE_LIMITS'] are counted in cache {alias!r} ({backend.rsplit('.', 1)[-1]}), which "
            "worker processes do not share: each process would allow the whole rate.",
            hint="Point ENVOY['RATE_LIMIT_CACHE'] at a django-redis cache.", id="envoy_django.W001"))
    return errors


@checks.register(checks.Tags.database)
def check_stranded_versions(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Unfinished jobs on a flow version this code does not register (``check --database default``)."""
    if not databases:
        return []
    from django.db import DatabaseError

    from envoy_django.scheduler.versions import stranded_versions

    try:
        stranded = stranded_versions()
    except DatabaseError:  # migrate runs database checks before its migrations: no table (or column) yet
        return []
    warnings: list[checks.CheckMessage] = []
    for flow, missing in sorted(stranded.items()):
        for version, jobs in sorted(missing.items()):
            warnings.append(checks.Warning(
                f"{jobs} unfinished job(s) of flow {flow!r} are on version {version}, which this code does not "
                "register: they wait for a process that has it.",
                hint=f"Keep version {version} registered until they finish, or move them with "
                     f"scheduler.migrate_jobs({flow!r}, {version}, ...); manage.py envoy_versions lists them.",
                id="envoy_django.W002",
            ))
    return warnings


def _metrics_errors(user: dict[str, Any]) -> list[checks.CheckMessage]:
    if not user.get("METRICS", DEFAULTS["METRICS"]):
        return []
    import importlib.util

    if importlib.util.find_spec("prometheus_client") is None:
        return [checks.Error("ENVOY['METRICS'] is on, but prometheus_client is not installed.",
                             hint="pip install 'envoy-django[metrics]'", id="envoy_django.E016")]
    token = user.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        return [checks.Error("ENVOY['METRICS_TOKEN'] must be a string of at least 16 characters.",
                             hint="A random one: python -c 'import secrets; print(secrets.token_urlsafe())'",
                             id="envoy_django.E017")]
    return []


def _stream_errors(user: dict[str, Any]) -> list[checks.CheckMessage]:
    alias = user.get("STREAM_CACHE", DEFAULTS["STREAM_CACHE"])
    caches = getattr(settings, "CACHES", None) or {"default": {}}
    if alias not in caches:
        return [checks.Error(f"ENVOY['STREAM_CACHE'] is {alias!r}, which CACHES does not have.",
                             hint="Name a cache the web and worker processes share.", id="envoy_django.E018")]
    return []


def _tasks_errors(user: dict[str, Any]) -> list[checks.CheckMessage]:
    from envoy_django.dispatch.tasks_api import tasks_module
    from envoy_django.exceptions import MissingExtraError

    try:
        module = tasks_module()
    except MissingExtraError as exc:
        return [checks.Error(str(exc), hint="Django 6 has django.tasks built in; on Django 5.2 install the "
                             "django-tasks backport.", id="envoy_django.E012")]
    alias = user.get("TASKS_BACKEND", DEFAULTS["TASKS_BACKEND"])
    if alias not in module.task_backends.settings:
        return [checks.Error(f"ENVOY['TASKS_BACKEND'] is {alias!r}, which TASKS does not have.",
                             hint="Name one of TASKS' aliases (the default is 'default').", id="envoy_django.E013")]
    from envoy_django.tasks import EnvoyBackend

    backend = module.task_backends[alias]
    if isinstance(backend, EnvoyBackend):
        return [checks.Error(
            f"ENVOY['TASKS_BACKEND'] is {alias!r}, an EnvoyBackend: envoy's own messages would go back to envoy.",
            hint="Name a backend with its own queue and worker (django-tasks-db's, django-tasks-rq's...), or use "
                 "ENVOY['EXECUTION'] = 'rq' or 'immediate' beside an EnvoyBackend.", id="envoy_django.E015")]
    from envoy_django.registry import routed_queues

    served = backend.queues
    return [
        checks.Error(
            f"flow {flow!r} is registered with queue {queue!r}, which the Tasks backend {alias!r} does not serve.",
            hint=f"Add {queue!r} to TASKS[{alias!r}]['QUEUES'].", id="envoy_django.E014")
        for flow, queue in sorted(routed_queues().items()) if served and queue not in served
    ]
