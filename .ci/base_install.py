"""The embedded default on the base install alone: Django and envoy-django, nothing else.

Run by .ci/run in a fresh virtualenv holding only the built wheel. Runs a
flow that spawns a child and escalates to a person, on SQLite in
"immediate" mode; the optional parts say which extra they need.
"""

from __future__ import annotations

import importlib.util
import sys

import django
from django.conf import settings

for extra_module in ("rq", "django_rq", "redis", "openai", "psycopg"):
    assert importlib.util.find_spec(extra_module) is None, f"{extra_module} is installed: not a base install"

settings.configure(
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "envoy_django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()

from django.core.management import call_command  # noqa: E402

from envoy_django import StateFlow, register, scheduler  # noqa: E402
from envoy_django.exceptions import MissingExtraError  # noqa: E402
from envoy_django.models import Escalation  # noqa: E402

call_command("migrate", verbosity=0)
assert call_command("check") is None

from django.contrib.auth.models import User  # noqa: E402

User.objects.create_user("alice")  # escalations ask people who exist


def double(ctx):
    ctx.output(ctx.input() * 2)
    return ctx


def spawn(ctx):
    ctx.set("child", ctx.spawn("double", ctx.input()))
    return ctx


def ask(ctx):
    ctx.set("question", ctx.escalate("alice", "Ship it?", [{"id": "ok", "type": "approve", "label": "OK"}]))
    return ctx


def finish(ctx):
    ctx.output({"child": ctx.result(ctx.get("child"))["value"], "reply": ctx.result(ctx.get("question"))["status"]})
    return ctx


register("double", StateFlow([{"name": "Double", "on_state": double}]))
register("parent", StateFlow([
    {"name": "Spawn", "on_state": spawn},
    {"name": "Ask", "on_state": ask},
    {"name": "Finish", "on_state": finish},
]))

job_id = scheduler.schedule("parent", 21)
assert scheduler.get_job(job_id).status == "blocking"
scheduler.reply_to_escalation(Escalation.objects.get(job_id=job_id).pk, {"ok": True}, "approved", user="alice")
job = scheduler.get_job(job_id)
assert (job.status, job.output) == ("done", {"child": 42, "reply": "approved"}), (job.status, job.output)
call_command("envoy_sweep", "--once", verbosity=0)

try:
    from envoy_django import OpenAIProvider  # noqa: F401
except MissingExtraError as exc:
    assert "[openai]" in str(exc), exc
else:
    sys.exit("OpenAIProvider imported without the [openai] extra")
try:
    import envoy_django.worker  # noqa: F401
except MissingExtraError as exc:
    assert "[rq]" in str(exc), exc
else:
    sys.exit("envoy_django.worker imported without the [rq] extra")
from envoy_django import ToolAgent  # noqa: E402,F401  (needs no extra: the provider is passed in)

print("base install OK: spawn, escalation and sweep on SQLite with Django alone")
