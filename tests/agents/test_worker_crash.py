"""A ToolAgent job survives a SIGKILLed ``envoy_worker`` between its tool call and its next model call.

Real worker processes (PostgreSQL, Redis) run the ``assistant_crash`` agent
of tests/testapp/agent_flows.py. They reach this test's scripted server
through ``ENVOY_TEST_OPENAI_BASE_URL`` and log every tool run to a file in
``ENVOY_TEST_AGENT_DIR``, so runs are counted across processes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
from pathlib import Path

import pytest

from envoy_django import scheduler
from envoy_django.models import Job, Step
from envoy_django.testing.openai_server import text_reply, tool_call_reply
from envoy_django.testing.processes import wait_until
from tests.testapp.agent_flows import (
    AGENT_DIR_ENV,
    BASE_URL_ENV,
    HOLD,
    RELEASE,
    TOOL_LOG,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def tool_runs(directory: Path) -> list[dict]:
    log = directory / TOOL_LOG
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def start_two_workers(workers, server, directory: Path) -> None:
    env = {BASE_URL_ENV: server.base_url, AGENT_DIR_ENV: str(directory)}
    workers.start(extra_env=env)
    workers.start(extra_env=env)


def holder_pid(job: Job) -> int:
    return int(job.lease_owner.split(":")[1])  # "host:pid:thread:nonce"


def finished(job_id: str) -> Job:
    wait_until(lambda: Job.objects.get(pk=job_id).is_finished, what="another worker to finish the job")
    job = Job.objects.get(pk=job_id)
    assert job.status == "done", f"{job.status}: {job.error_type}: {job.error}"
    return job


def kill_worker(pid: int) -> None:
    """SIGKILL a worker process (it forks nothing: RQ's scheduler runs in the supervisor)."""
    os.kill(pid, signal.SIGKILL)


def test_killed_after_the_tool_committed_resumes_at_the_model_call(server, workers, tmp_path):
    server.add(tool_call_reply(("add", {"a": 2, "b": 3})), text_reply("2 + 3 = 5."))
    (tmp_path / HOLD).touch()  # park whichever worker reaches the second Plan
    start_two_workers(workers, server, tmp_path)
    job_id = scheduler.schedule("assistant_crash", "What is 2+3?")
    try:
        wait_until(lambda: any(tmp_path.glob("paused-*")), what="a worker to pause before the second model call")
        (paused,) = tmp_path.glob("paused-*")
        job = Job.objects.get(pk=job_id)
        victim, owner = holder_pid(job), job.lease_owner
        assert paused.name == f"paused-{victim}"
        # The kill point: ToolCall committed (the checkpoint holds the tool's
        # answer and says "Plan, step 3, enter"), the second model call not
        # yet sent - the worker is parked in Plan's enter phase.
        assert (job.status, job.state, job.step, job.context["phase"]) == ("running", "Plan", 3, "enter")
        assert job.context["data"]["messages"][-1] == {"role": "tool", "tool_call_id": "call_1_0", "content": "5"}
        assert [run["pid"] for run in tool_runs(tmp_path)] == [victim]
        assert len(server.requests) == 1
        kill_worker(victim)
    finally:
        (tmp_path / RELEASE).touch()

    job = finished(job_id)
    assert job.output == "2 + 3 = 5."
    # Exactly once each: nothing that was in flight at the kill had been
    # sent or run, so the new worker re-ran only the (pure) enter phase.
    assert [(run["tool"], run["pid"]) for run in tool_runs(tmp_path)] == [("add", victim)]
    assert len(server.requests) == 2  # Plan step 1, Plan step 3
    assert server.requests[1]["messages"][-1]["content"] == "5"
    assert job.context["data"]["usage"]["calls"] == 2
    steps = list(Step.objects.filter(job_id=job_id, error="").order_by("pk"))
    before = [(s.state, s.phase) for s in steps if s.number < 3]
    assert before == [("Plan", "enter"), ("Plan", "state"), ("Plan", "route"), ("ToolCall", "enter"),
                      ("ToolCall", "state")]
    assert {s.worker for s in steps if s.number < 3} == {owner}
    after = [s for s in steps if s.number == 3]
    assert [(s.state, s.phase) for s in after] == [("Plan", "enter"), ("Plan", "state"), ("Plan", "route")]
    assert all(s.worker != owner for s in after)


def test_model_call_in_flight_at_the_kill_is_made_again_and_nothing_else(server, workers, tmp_path):
    """The other kill point: the second model call already sent and not answered.

    Its answer was never checkpointed, so the next worker must ask again:
    that one call legitimately happens twice, with the same messages.
    Everything committed before it - the first model call, the tool - is
    not repeated.
    """
    in_flight = threading.Event()
    release = threading.Event()
    calls = itertools.count()

    def hang_once(messages: list[dict]) -> dict:
        if next(calls) == 0:
            in_flight.set()
            release.wait(120)
            return text_reply("an answer nobody is left to read")
        return text_reply("2 + 3 = 5.")

    server.add(tool_call_reply(("add", {"a": 2, "b": 3})))
    server.responder = hang_once
    start_two_workers(workers, server, tmp_path)
    job_id = scheduler.schedule("assistant_crash", "What is 2+3?")
    try:
        wait_until(in_flight.is_set, what="the second model call to reach the server")
        job = Job.objects.get(pk=job_id)
        victim, owner = holder_pid(job), job.lease_owner
        assert (job.status, job.state, job.step) == ("running", "Plan", 3)
        assert [run["pid"] for run in tool_runs(tmp_path)] == [victim]
        kill_worker(victim)
    finally:
        release.set()

    job = finished(job_id)
    assert job.output == "2 + 3 = 5."
    assert [(run["tool"], run["pid"]) for run in tool_runs(tmp_path)] == [("add", victim)]
    first, killed, repeated = server.requests  # Plan 1 once; Plan 3 cut off, then asked again
    assert killed["messages"] == repeated["messages"]
    assert repeated["messages"][-1]["content"] == "5"
    assert job.context["data"]["usage"]["calls"] == 2  # only answered calls are counted
    finished_plan = Step.objects.get(job_id=job_id, error="", number=3, phase="state")
    assert finished_plan.worker != owner
