"""Fixtures for the admin tests: users with given permissions, jobs in each status, a hostile flow.

Jobs are made by the scheduler in the embedded "immediate" mode, which runs
them after commit: hence ``transaction=True`` on every test that uses these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.utils import timezone

from envoy_django import StateFlow, register, scheduler
from envoy_django.models import Escalation, Job
from envoy_django.registry import unregister

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    """``make_user("alice", "reply_escalation", "view_job")``: a staff user with those envoy_django permissions."""

    def make(username: str, *codenames: str, superuser: bool = False) -> Any:
        # The people the test flows escalate to exist already (tests/testapp/apps.py).
        user = django_user_model.objects.filter(username=username).first() or django_user_model(username=username)
        user.email = f"{username}@example.com"
        user.is_staff = True
        user.is_superuser = superuser
        user.set_password("pw")
        user.save()
        if codenames:
            user.user_permissions.add(
                *Permission.objects.filter(content_type__app_label="envoy_django", codename__in=codenames)
            )
        return user

    return make


@pytest.fixture
def login() -> Callable[[Any], Client]:
    def client_for(user: Any) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return client_for


@pytest.fixture
def superuser_client(make_user: Callable[..., Any], login: Callable[[Any], Client]) -> Client:
    return login(make_user("root", superuser=True))


def blocking_family(reviewer: str = "alice", **config: Any) -> tuple[str, Escalation]:
    """A "family" job blocked on its escalation to ``reviewer``."""
    job_id = scheduler.schedule("family", {"children": [1, 2], "reviewer": reviewer, **config})
    scheduler.resolve_blocking_job(job_id, "payment", {"amount": 42})
    return job_id, Escalation.objects.get(job_id=job_id)


@pytest.fixture
def family() -> Callable[..., tuple[str, Escalation]]:
    return blocking_family


@pytest.fixture
def jobs_in_each_status() -> dict[str, str]:
    """One job per status, each reached through the scheduler except ``running``.

    Nothing stops mid-run in the embedded mode, so the running job is a
    pending one whose row is marked as a worker would mark it.
    """
    from tests.testapp import flows

    ids = {"done": scheduler.schedule("hello", "admin")}
    ids["blocking"], _ = blocking_family()
    ids["pending"] = scheduler.schedule("hello", run_at=timezone.now() + dt.timedelta(days=1))
    ids["running"] = scheduler.schedule("slow", {"seconds": 0}, run_at=timezone.now() + dt.timedelta(days=1))
    Job.objects.filter(pk=ids["running"]).update(
        status="running", started_at=timezone.now(), lease_owner="worker-1",
        lease_expires_at=timezone.now() + dt.timedelta(seconds=30),
    )
    flows.calls.clear()
    with override_settings(ENVOY={"MAX_RETRIES": 0}):
        ids["failed"] = scheduler.schedule("flaky", 5)
    ids["cancelled"] = scheduler.schedule("parent_of_waiting_child")
    scheduler.cancel_job(ids["cancelled"])
    return ids


def _evil_state(ctx: Any) -> Any:
    ctx.set("note", EVIL)
    ctx.progress(0.5, EVIL)
    ctx.set("escalation", ctx.escalate("alice", f"Publish {EVIL}?", [
        {"id": "choice", "type": "select", "label": f"Pick {EVIL}", "options": {EVIL: f"Label {EVIL}", "ok": "fine"}},
        {"id": "why", "type": "comment", "label": f"Why {EVIL}"},
        {"id": "sure", "type": "approve", "label": f"Sure {EVIL}"},
    ]))
    return ctx


def _evil_output(ctx: Any) -> Any:
    ctx.output({"html": EVIL, "reply": ctx.result(ctx.get("escalation"))})
    return ctx


@pytest.fixture
def evil_flow() -> Any:
    """A flow whose state name, data, progress, escalation and output all carry a script tag."""
    register("evil", StateFlow([
        {"name": f"Ask {EVIL}", "on_state": _evil_state},
        {"name": "Publish", "on_state": _evil_output},
    ]), replace=True)
    yield "evil"
    unregister("evil")


@pytest.fixture
def evil_job(evil_flow: str) -> tuple[str, Escalation]:
    job_id = scheduler.schedule(evil_flow, EVIL)
    return job_id, Escalation.objects.get(job_id=job_id)
