"""Flow versions: a job runs to its end on the version it started on; new jobs start on the highest.

A process without a job's version leaves the job alone, pending and saying
why, instead of failing it or running other code; ``migrate_jobs`` moves
unfinished jobs on. The flow ``versioned`` (tests/testapp/flows.py) has a
v1 (states Wait, Finish) and a v2 (states Await, Finish); each says which
version finished it.
"""

from __future__ import annotations

import datetime as dt
import logging
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from envoy_django import StateFlow, register, scheduler
from envoy_django.checks import check_stranded_versions
from envoy_django.exceptions import FlowDefinitionError, InvalidArgumentError, UnknownFlowVersionError
from envoy_django.models import Job, Step
from envoy_django.registry import get_flow, unregister, versions_of
from tests.testapp.flows import _VERSIONED

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def only_v1():
    """This process registers only v1 of "versioned" until the test says otherwise."""
    unregister("versioned", 2)
    yield
    register("versioned", _VERSIONED[2], version=2)


@pytest.fixture
def v1_job(only_v1):
    """A job that started (and blocks) on v1."""
    job_id = scheduler.schedule("versioned")
    register("versioned", _VERSIONED[2], version=2)
    assert Job.objects.get(pk=job_id).status == "blocking"
    return job_id


def job(job_id):
    return Job.objects.get(pk=job_id)


def test_new_jobs_start_on_the_highest_version():
    job_id = scheduler.schedule("versioned")
    assert (job(job_id).flow_version, job(job_id).state) == (2, "Await")
    scheduler.resolve_blocking_job(job_id, "go", "ok")
    assert job(job_id).output == "v2: ok"


def test_a_job_blocked_on_v1_resumes_on_v1_after_v2_is_registered(v1_job):
    assert versions_of("versioned") == [1, 2]
    scheduler.resolve_blocking_job(v1_job, "go", "ok")
    assert (job(v1_job).status, job(v1_job).output, job(v1_job).flow_version) == ("done", "v1: ok", 1)
    assert [s.state for s in Step.objects.filter(job_id=v1_job).order_by("pk")] == ["Wait", "Finish"]


def test_a_process_without_the_version_leaves_the_job_waiting_and_says_why(v1_job, caplog):
    unregister("versioned", 1)
    try:
        with caplog.at_level(logging.WARNING, "envoy_django.executor"):
            scheduler.resolve_blocking_job(v1_job, "go", "ok")
            scheduler.cleanup_orphaned_jobs()  # nothing moves it here, however often it is tried
            with mock.patch("django.utils.timezone.now", return_value=timezone.now() + dt.timedelta(minutes=5)):
                scheduler.cleanup_orphaned_jobs()
        waiting = job(v1_job)
        assert waiting.status == "pending" and waiting.error == "" and waiting.attempts == 0
        assert waiting.pending_reason == "flow 'versioned' version 1 is not registered in this process"
        warned = [r for r in caplog.records if "is not registered in this process" in r.getMessage()]
        assert len(warned) == 1  # once per job, not once per try
        assert Step.objects.filter(job_id=v1_job).count() == 1  # v2's code never ran it
    finally:
        register("versioned", _VERSIONED[1], version=1)
    # A process that has v1 again (an old worker in a rolling deploy) runs it.
    with mock.patch("django.utils.timezone.now", return_value=timezone.now() + dt.timedelta(minutes=10)):
        scheduler.cleanup_orphaned_jobs()
    assert (job(v1_job).status, job(v1_job).output, job(v1_job).pending_reason) == ("done", "v1: ok", "")


def test_a_child_starts_on_the_highest_version_or_the_one_its_parent_names():
    register("spawns_versions", StateFlow([{"name": "Spawn", "on_state": _spawn_both}]))
    try:
        parent = scheduler.schedule("spawns_versions")
        children = {c.flow_version: c for c in Job.objects.filter(parent_id=parent)}
        assert sorted(children) == [1, 2]
        assert (children[1].state, children[2].state) == ("Wait", "Await")
    finally:
        unregister("spawns_versions")


def _spawn_both(ctx):
    ctx.spawn("versioned")
    ctx.spawn("versioned", version=1)
    return ctx


@pytest.mark.parametrize("version", [0, -1, True, "2", 1.5])
def test_register_refuses_a_bad_version(version):
    with pytest.raises(FlowDefinitionError, match="version must be a whole number"):
        register("versioned", _VERSIONED[1], version=version)


def test_each_version_is_its_own_registration():
    with pytest.raises(FlowDefinitionError, match="'versioned' version 2; pass replace=True"):
        register("versioned", _VERSIONED[1], version=2)
    assert get_flow("versioned") is _VERSIONED[2] and get_flow("versioned", 1) is _VERSIONED[1]
    with pytest.raises(UnknownFlowVersionError, match=r"flow 'versioned' version 3 is not registered .*1, 2"):
        get_flow("versioned", 3)


# --- migrate_jobs ----------------------------------------------------------------------


def test_migrate_jobs_with_a_state_map_moves_blocked_jobs_and_they_finish_on_the_new_version(v1_job):
    moved = scheduler.migrate_jobs("versioned", 1, 2, state_map={"Wait": "Await"})
    assert moved == [v1_job]
    moved_job = job(v1_job)
    assert (moved_job.flow_version, moved_job.state, moved_job.context["state"]) == (2, "Await", "Await")
    assert {w["state"] for w in moved_job.context["waits"].values()} == {"Await"}
    scheduler.resolve_blocking_job(v1_job, "go", "ok")
    assert (job(v1_job).status, job(v1_job).output) == ("done", "v2: ok")


def test_migrate_jobs_without_a_map_keeps_state_names_both_versions_have():
    register("versioned", StateFlow([
        {"name": "Wait", "on_state": _VERSIONED[1].states["Wait"].on_state},
        {"name": "Finish", "on_state": lambda ctx: (ctx.output("v3"), ctx)[1]},
    ]), version=3)
    try:
        old = scheduler.schedule("versioned")  # v3
        unregister("versioned", 3)
        register("versioned", _VERSIONED[1], version=1, replace=True)
        # The v3 job is in state Wait, which v1 has too.
        assert scheduler.migrate_jobs("versioned", 3, 1) == [old]
        scheduler.resolve_blocking_job(old, "go", "x")
        assert job(old).output == "v1: x"
    finally:
        unregister("versioned", 3)


def test_migrate_jobs_refuses_a_state_the_target_lacks_and_moves_nothing(v1_job):
    other = scheduler.schedule_many([("versioned", None)])  # a v2 job, not a candidate
    before = list(Job.objects.order_by("pk").values_list("pk", "flow_version", "state", "updated_at"))
    with pytest.raises(InvalidArgumentError, match=rf"state 'Wait' of job\(s\) {v1_job} is not in version 2 "
                                                   r"\(states: Await, Finish\).*nothing moved"):
        scheduler.migrate_jobs("versioned", 1, 2)
    with pytest.raises(InvalidArgumentError, match="sends 'Wait' to 'Nowhere', which the target version does not"):
        scheduler.migrate_jobs("versioned", 1, 2, state_map={"Wait": "Nowhere"})
    with pytest.raises(InvalidArgumentError, match="are the same"):
        scheduler.migrate_jobs("versioned", 1, 1)
    with pytest.raises(UnknownFlowVersionError, match="version 7 is not registered"):
        scheduler.migrate_jobs("versioned", 1, 7)
    assert list(Job.objects.order_by("pk").values_list("pk", "flow_version", "state", "updated_at")) == before
    assert other


@pytest.mark.usefixtures("redis_conn")
def test_migrate_jobs_never_moves_a_running_job(v1_job):
    Job.objects.filter(pk=v1_job).update(status="running", lease_owner="someone")  # a worker has it
    assert scheduler.migrate_jobs("versioned", 1, 2, state_map={"Wait": "Await"}) == []
    assert job(v1_job).flow_version == 1


def test_a_pending_job_left_for_want_of_its_version_is_sent_again_once_moved(v1_job):
    unregister("versioned", 1)
    try:
        scheduler.resolve_blocking_job(v1_job, "go", "ok")
        assert job(v1_job).status == "pending"
        with override_settings(ENVOY={"EXECUTION": "immediate"}):
            assert scheduler.migrate_jobs("versioned", 1, 2, state_map={"Wait": "Await"}) == [v1_job]
        assert (job(v1_job).status, job(v1_job).output) == ("done", "v2: ok")  # ran at once, on v2
    finally:
        register("versioned", _VERSIONED[1], version=1)


# --- the check and the command -----------------------------------------------------------


def test_the_check_warns_of_jobs_on_a_version_no_longer_registered(v1_job):
    assert check_stranded_versions(databases=["default"]) == []
    unregister("versioned", 1)
    try:
        warnings = check_stranded_versions(databases=["default"])
        assert [w.id for w in warnings] == ["envoy_django.W002"]
        assert "1 unfinished job(s) of flow 'versioned' are on version 1" in warnings[0].msg
        assert check_stranded_versions(databases=None) == []  # only with --database: it queries
        out = StringIO()
        call_command("envoy_versions", stdout=out)
        assert "versioned: registered v2\n  v1: 1 unfinished job  <- not registered here" in out.getvalue()
        assert "  v2: 0 unfinished jobs\n" in out.getvalue()
    finally:
        register("versioned", _VERSIONED[1], version=1)


def test_a_tool_agent_is_versioned_like_any_flow():
    from envoy_django import ToolAgent
    from tests.testapp import agent_flows

    first, second = ToolAgent(agent_flows.endpoint), ToolAgent(agent_flows.endpoint, max_model_calls=2)
    register("versioned_agent", first)
    register("versioned_agent", second, version=2)
    try:
        job_id = scheduler.schedule("versioned_agent", "hi", run_at=timezone.now() + dt.timedelta(days=1))
        assert job(job_id).flow_version == 2
        assert get_flow("versioned_agent", 1) is first and get_flow("versioned_agent") is second
    finally:
        unregister("versioned_agent")
