"""Two answers at once: one wins, the other gets the right error, and the job always moves on.

Before, in immediate mode, the winner's on-commit claim skipped the job row
(SKIP LOCKED) while the loser still held it, and nothing ever retried: the
winning job stayed ``pending`` forever (17 of 30 rounds through the API on
PostgreSQL). Each test runs 20 rounds, with threads or with processes, in
both execution modes, and every job must end ``done``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from django.db import connection

from envoy_django import scheduler
from envoy_django.models import Escalation, Job, JobStatus
from envoy_django.testing.processes import wait_until
from tests.support import ROOT, in_threads
from tests.workers.replier import answer

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ROUNDS = 20


def _targets(kind: str) -> tuple[list[str], list[str]]:
    """(job ids, what to answer: escalation ids or "job:wait") for ROUNDS blocked jobs."""
    flow = "ask" if kind == "approve" else "await_go"
    jobs = [scheduler.schedule(flow) for _ in range(ROUNDS)]
    wait_until(lambda: Job.objects.filter(pk__in=jobs, status=JobStatus.BLOCKING).count() == ROUNDS,
               what="every job to block")
    if kind == "approve":
        rows = Escalation.objects.filter(job_id__in=jobs).values_list("job_id", "pk")
        by_job = {str(job): str(pk) for job, pk in rows}
        return jobs, [by_job[job] for job in jobs]
    return jobs, [f"{job}:go" for job in jobs]


def _race_in_threads(kind: str, targets: list[str]) -> list[list[str]]:
    return [
        sorted(in_threads(*(partial(answer, kind, target, who) for who in ("tab-1", "tab-2"))))
        for target in targets
    ]


def _race_in_processes(kind: str, targets: list[str], tmp_path: Path, execution: str) -> list[list[str]]:
    env = {**os.environ, "ENVOY_TEST_DB_NAME": connection.settings_dict["NAME"], "ENVOY_TEST_EXECUTION": execution}
    repliers = [
        subprocess.Popen([sys.executable, str(ROOT / "tests" / "workers" / "replier.py"), str(tmp_path), who, kind,
                          *targets], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for who in ("tab-1", "tab-2")
    ]
    per_process = []
    for replier in repliers:
        out, _ = replier.communicate(timeout=300)
        assert replier.returncode == 0
        per_process.append(json.loads(out))
    return [sorted(pair) for pair in zip(*per_process, strict=True)]


def _assert_one_won_each_round_and_every_job_finished(outcomes: list[list[str]], jobs: list[str]) -> None:
    assert outcomes == [["lost", "won"]] * ROUNDS
    wait_until(lambda: Job.objects.filter(pk__in=jobs, status=JobStatus.DONE).count() == ROUNDS,
               what="every answered job to finish")


@pytest.mark.parametrize("kind", ["approve", "resolve"])
def test_threads_immediate_mode(kind):
    jobs, targets = _targets(kind)
    outcomes = _race_in_threads(kind, targets)
    # Immediate mode: the winner's call ran the job before it returned.
    assert Job.objects.filter(pk__in=jobs, status=JobStatus.DONE).count() == ROUNDS
    _assert_one_won_each_round_and_every_job_finished(outcomes, jobs)


@pytest.mark.parametrize("kind", ["approve", "resolve"])
def test_processes_immediate_mode(kind, tmp_path):
    jobs, targets = _targets(kind)
    outcomes = _race_in_processes(kind, targets, tmp_path, "immediate")
    assert Job.objects.filter(pk__in=jobs, status=JobStatus.DONE).count() == ROUNDS
    _assert_one_won_each_round_and_every_job_finished(outcomes, jobs)


@pytest.mark.parametrize("kind", ["approve", "resolve"])
def test_threads_rq_mode(kind, workers):
    workers.start(concurrency=2)
    jobs, targets = _targets(kind)
    _assert_one_won_each_round_and_every_job_finished(_race_in_threads(kind, targets), jobs)


@pytest.mark.parametrize("kind", ["approve", "resolve"])
def test_processes_rq_mode(kind, workers, tmp_path):
    workers.start(concurrency=2)
    jobs, targets = _targets(kind)
    _assert_one_won_each_round_and_every_job_finished(
        _race_in_processes(kind, targets, tmp_path, "rq"), jobs
    )

