"""The embedded demo end to end, as a newcomer runs it: ``manage.py envoy_demo --no-serve``.

Runs in subprocesses against a fresh SQLite file, with DATABASE_URL, REDIS_URL
and the OPENAI variables removed, so it behaves the same on a laptop and in CI
(where those point at real services). The approval runs in a second process,
as it would in ``runserver``: that process must start its own offline model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRUBBED = ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL",
            "ENVOY_DEMO_NO_SERVE", "DJANGO_SETTINGS_MODULE")

APPROVE = """
import json
from envoy_django import scheduler
from envoy_django.models import Escalation

pending = list(Escalation.objects.filter(status="pending").select_related("job").order_by("created_at"))
report = {"pending": sorted([e.job.flow, e.user] for e in pending)}
review = next(e for e in pending if e.job.flow == "content-review")
refund = next(e for e in pending if e.job.flow == "assistant")
scheduler.reply_to_escalation(review.pk, {"verdict": "publish", "comment": "Ship it.", "approve": True},
                              "approved", user="admin")
scheduler.reply_to_escalation(refund.pk, {"approve": True}, "approved", user="admin")
for name, escalation in (("review", review), ("refund", refund)):
    job = scheduler.get_job(escalation.job_id)
    report[name] = {"status": job.status, "output": job.output}
print("RESULT " + json.dumps(report))
"""


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # A timeout, so a demo that wrongly starts serving fails the test instead of hanging it.
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def summary_row(output: str, flow: str) -> str:
    """The summary table's row for the first top-level job of ``flow``."""
    summary = output.split("\nSummary:\n", 1)[1].split("\n\n", 1)[0]
    match = re.search(rf"^  {re.escape(flow)} +[0-9a-f]{{8}}  (.*)$", summary, re.MULTILINE)
    assert match, f"no {flow!r} row in the summary:\n{summary}"
    return " ".join(match.group(1).split())


def test_demo_runs_offline_and_the_review_finishes_once_approved(demo_env: dict[str, str]) -> None:
    first = manage(demo_env, "envoy_demo", "--no-serve")

    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "offline scripted model" in out
    assert "created user 'admin' with password 'admin'" in out
    assert summary_row(out, "hello") == "done Hello! Middle! End!"
    assert summary_row(out, "big-or-small") == "done Big number!"
    assistant = summary_row(out, "assistant")
    assert assistant.startswith("done ") and re.search(r"\b4\b", assistant)
    assert summary_row(out, "content-review") == "blocking (waiting for 'admin' to approve)"
    assert out.count("- summarize-section") == 3
    assert "http://127.0.0.1:8000/admin/envoy_django/escalation/" in out
    assert "Not serving" in out

    approved = manage(demo_env, "shell", "-c", APPROVE)

    assert approved.returncode == 0, approved.stderr
    report = json.loads(approved.stdout.split("RESULT ", 1)[1])
    assert report["pending"] == [["assistant", "admin"], ["content-review", "admin"]]
    assert report["review"]["status"] == "done"
    assert report["review"]["output"] == {"title": "Envoy in five minutes", "status": "approved",
                                          "verdict": "publish", "comment": "Ship it.", "words": 71}
    assert report["refund"]["status"] == "done"
    assert "order 42 refunded" in report["refund"]["output"]

    # Running it again (here with the environment switch instead of the flag) is safe.
    again = manage({**demo_env, "ENVOY_DEMO_NO_SERVE": "1"}, "envoy_demo")

    assert again.returncode == 0, again.stderr
    assert "user 'admin' already exists" in again.stdout
    assert summary_row(again.stdout, "hello") == "done Hello! Middle! End!"
    assert "Not serving" in again.stdout
