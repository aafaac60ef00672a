"""Nothing strands: a hypothesis state machine over the scheduler in "rq" mode.

The rules interleave, at random, what happens to jobs in production:

- ``schedule``: a 3-state flow that finishes, a flow whose handler fails its
  first attempt (retried at once: RETRY_BACKOFF 0), a flow that waits for the
  outside event "go" (with or without a timeout), a flow that escalates to a
  person (``on_reject`` "fail" or "continue"), and a parent that spawns one
  or two of those as children and waits for them;
- ``a_person_answers``: approve or reject a pending escalation
  (``reply_to_escalation``), or resolve a pending event wait
  (``resolve_blocking_job``);
- ``an_operator_acts``: ``cancel_job``, ``fail_job`` or ``retry_job``;
- ``run_one_message`` / ``run_every_message``: a worker takes a message off
  the Envoy queue and runs its job (``executor.run_job`` in this process);
- ``sweep`` (``cleanup_orphaned_jobs``); ``time_passes``: every lease, send
  time (``enqueued_at``), ``run_after`` and wait expiry moves a day into the
  past, so leases are expired and unclaimed sends are due for the sweep;
- ``lose_the_queue``: FLUSHDB of the test's own Redis database;
- ``a_worker_died_here``: ``transitions.claim(job, owner="dead-worker")``
  and nothing more; only the lease expiring frees the job.

(People's and operators' actions are one rule each, not five: hypothesis
turns a random subset of the rules off in each example, and fewer, broader
rules leave more examples that get as far as a reply.)

After every rule the rows must be consistent (``rows_are_consistent``):
every unfinished job has a way forward (running with a lease, blocking on a
pending wait, or pending with ``enqueued_at`` for the sweep), no successful
(job, number, phase) Step twice, a finished job leaves no pending wait or
escalation, a pending spawn wait's child is unfinished, a pending escalation
wait has its pending Escalation and the other way round, and no job failed
for a reason the scenario cannot cause (an engine error such as an
IntegrityError). At the end of each example, liveness: rounds of (resolve
every event wait, approve every escalation, time passes, sweep, run the
queue), at most ``LIVENESS_ROUNDS`` and until one changes nothing, must
finish every job; a job left unfinished fails the test with its rows.

Each example starts from empty tables and an empty Redis db; no worker
processes are started.

``ENVOY_STATEFUL_EXAMPLES`` sets the number of examples (default 60: about
10 s on SQLite, 15-20 s on PostgreSQL) and ``ENVOY_STATEFUL_STEPS`` the rules
per example (default 30). At 50 steps an example takes about 0.17 s on
SQLite and 0.4 s on PostgreSQL, so a 30-minute soak is::

    ENVOY_STATEFUL_EXAMPLES=4500 ENVOY_STATEFUL_STEPS=50 \\
    DATABASE_URL=postgres://... REDIS_URL=redis://127.0.0.1:6379/3 \\
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/scheduler/test_stateful.py

(``ENVOY_STATEFUL_EXAMPLES=10000`` on SQLite and fakeredis.) Add
``--hypothesis-show-statistics`` to see how often each outcome was reached.
A failure prints the shrunk rule sequence and a ``@reproduce_failure`` blob;
shrinking can take a few minutes.
"""

from __future__ import annotations

import datetime as dt
import os
import pprint

import pytest
from django.db.models import Count, F
from django.test import override_settings
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from envoy_django import StateFlow, register, scheduler
from envoy_django.dispatch.rq_queue import get_queue
from envoy_django.models import (
    FINISHED_STATUSES,
    Escalation,
    Job,
    JobStatus,
    Step,
    Wait,
)
from envoy_django.scheduler import transitions
from envoy_django.scheduler.executor import run_job
from envoy_django.scheduler.heartbeat import Heartbeat

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("ENVOY_STATEFUL_EXAMPLES") or 60)
STEPS = int(os.environ.get("ENVOY_STATEFUL_STEPS") or 30)
LIVENESS_ROUNDS = 20
MAX_MESSAGES = 500  # per drain: far more than an example can queue

RQ_MODE = {
    "EXECUTION": "rq",
    "RETRY_BACKOFF": 0.0,
    "RETRY_BACKOFF_MAX": 0.0,
    "MAX_RETRIES": 3,
    # Long, so that nothing expires by the wall clock during an example (only "time passes" ages rows,
    # which keeps every replay of an example the same), and the heartbeat thread, which ticks every
    # LEASE_SECONDS / 3, stays out of the way of the jobs this thread runs.
    "LEASE_SECONDS": 3600.0,
    "MAX_CLAIMS": 3,  # low, so that workers dying on one job reach the poison-job failure
}
DEAD_WORKER = "dead-worker"
TIME_PASSES = dt.timedelta(days=1)

# Why a job may fail in this scenario; any other error_type is the engine failing a job.
EXPECTED_FAILURES = {"FailedByOperator", "EscalationRejected", "PoisonJob"}

# --- flows -------------------------------------------------------------------------
#
# Every job's input is {"token": "j<n>" or "j<n>.<i>" for a parent's i-th child, ...}:
# the token orders jobs the same way in every run of an example.

_FAILED_ONCE: set[str] = set()  # tokens whose flaky handler already failed its first attempt


def _append(name):
    def handler(ctx):
        done = ctx.output() if isinstance(ctx.output(), list) else []
        ctx.output(done + [name])
        return ctx

    return handler


def _fails_first_time(ctx):
    token = ctx.input()["token"]
    if token not in _FAILED_ONCE:
        _FAILED_ONCE.add(token)
        raise RuntimeError(f"first attempt of {token} fails")
    ctx.output("tried twice")
    return ctx


def _wait_for_go(ctx):
    ctx.wait_for(["go"], timeout=ctx.input().get("timeout"))
    return ctx


def _after_go(ctx):
    ctx.output(ctx.result("go"))
    return ctx


APPROVE_INPUTS = [{"id": "ok", "type": "approve", "label": "OK"}]


def _ask(ctx):
    ctx.set("asked", ctx.escalate("alice", "May I?", APPROVE_INPUTS, on_reject=ctx.input().get("on_reject", "fail")))
    return ctx


def _answered(ctx):
    ctx.output(ctx.result(ctx.get("asked")))
    return ctx


def _spawn_children(ctx):
    spec = ctx.input()
    ctx.set("children", [
        ctx.spawn(FLOWS[kind], {"token": f"{spec['token']}.{i}", "timeout": spec.get("timeout"),
                                "on_reject": spec.get("on_reject", "fail")})
        for i, kind in enumerate(spec["children"])
    ])
    return ctx


def _collect(ctx):
    ctx.output([ctx.result(w)["status"] for w in ctx.get("children")])
    return ctx


FLOWS = {
    "steps": "stateful_steps",
    "flaky": "stateful_flaky",
    "event": "stateful_event",
    "escalate": "stateful_escalate",
    "parent": "stateful_parent",
}
CHILD_KINDS = ["steps", "flaky", "event", "escalate"]

register(FLOWS["steps"], StateFlow([
    {"name": "A", "on_state": _append("A")},
    {"name": "B", "on_state": _append("B")},
    {"name": "C", "on_state": _append("C")},
]), replace=True)
register(FLOWS["flaky"], StateFlow([
    {"name": "Try", "on_state": _fails_first_time},
    {"name": "After", "on_state": _append("After")},
]), replace=True)
register(FLOWS["event"], StateFlow([
    {"name": "Wait", "on_state": _wait_for_go},
    {"name": "Go", "on_state": _after_go},
]), replace=True)
register(FLOWS["escalate"], StateFlow([
    {"name": "Ask", "on_state": _ask},
    {"name": "Answered", "on_state": _answered},
]), replace=True)
register(FLOWS["parent"], StateFlow([
    {"name": "Spawn", "on_state": _spawn_children},
    {"name": "Collect", "on_state": _collect},
    {"name": "Done", "on_state": _append("Done")},
]), replace=True)


# --- helpers -------------------------------------------------------------------------


def _token_key(job: Job) -> tuple[int, ...]:
    token = (job.input or {}).get("token", "j0")
    return tuple(int(part) for part in token[1:].split("."))


def _sorted_jobs(**filters) -> list[Job]:
    return sorted(Job.objects.filter(**filters), key=_token_key)


def _pick(items: list, index: int):
    return items[index % len(items)]


def _queued() -> list[tuple[str, str]]:
    """(RQ message id, Envoy job id) of every message on the Envoy queue, in queue order."""
    queue = get_queue()
    found = []
    for rq_id in queue.job_ids:
        message = queue.fetch_job(rq_id)
        if message is None:
            queue.remove(rq_id)
            continue
        found.append((rq_id, message.args[0]))
    return found


def _perform(rq_id: str) -> None:
    """What a worker does with one message: take it off the queue and run its job."""
    queue = get_queue()
    message = queue.fetch_job(rq_id)
    queue.remove(rq_id)
    if message is None:
        return
    job_id = message.args[0]
    queue.connection.delete(message.key)
    run_job(job_id)


def _drain() -> int:
    queue = get_queue()
    for count in range(MAX_MESSAGES):
        rq_id = queue.connection.lpop(queue.key)  # what a worker's dequeue does
        if rq_id is None:
            return count
        rq_id = rq_id.decode() if isinstance(rq_id, bytes) else rq_id
        message = queue.fetch_job(rq_id)
        if message is not None:
            job_id = message.args[0]
            queue.connection.delete(message.key)
            run_job(job_id)
    raise AssertionError(f"the Envoy queue still held {queue.count} messages after {MAX_MESSAGES}")


def _time_passes() -> None:
    """A day goes by: leases expire, sent-but-unclaimed jobs become due for the sweep, waits time out."""
    for field in ("lease_expires_at", "enqueued_at", "run_after"):
        Job.objects.filter(**{f"{field}__isnull": False}).update(**{field: F(field) - TIME_PASSES})
    Wait.objects.filter(expires_at__isnull=False).update(
        expires_at=F("expires_at") - TIME_PASSES, created_at=F("created_at") - TIME_PASSES
    )


def _progress_marker() -> tuple:
    """What a round of settling changes when it gets anywhere (not the clock)."""
    return (
        sorted(Job.objects.values_list("pk", "status", "step", "attempts", "claims", "lease_owner")),
        sorted(Wait.objects.values_list("pk", "status")),
        get_queue().count,
    )


def _describe(job_ids) -> str:
    """The rows of these jobs, their waits, escalations and steps, for a failure message."""
    out = []
    for job in Job.objects.filter(pk__in=list(job_ids)):
        row = {k: v for k, v in Job.objects.filter(pk=job.pk).values()[0].items() if k != "traceback"}
        out.append(f"JOB {pprint.pformat(row, width=120)}")
        for wait in Wait.objects.filter(job_id=job.pk).order_by("pk").values():
            out.append(f"  WAIT {wait}")
        for escalation in Escalation.objects.filter(job_id=job.pk).values("id", "wait_id", "status", "on_reject"):
            out.append(f"  ESCALATION {escalation}")
        for step in Step.objects.filter(job_id=job.pk).order_by("pk").values(
            "number", "state", "phase", "attempt", "error", "worker"
        ):
            out.append(f"  STEP {step}")
    return "\n".join(out)


# --- the machine ---------------------------------------------------------------------

_INDEX = st.integers(min_value=0, max_value=7)
_JOB_SPEC = st.fixed_dictionaries({
    "kind": st.sampled_from(["steps", "flaky", "event", "escalate", "parent", "event", "escalate", "parent"]),
    "children": st.lists(st.sampled_from(CHILD_KINDS), min_size=1, max_size=2),  # for a parent
    "timeout": st.sampled_from([None, 600]),  # of event waits
    "on_reject": st.sampled_from(["fail", "continue"]),  # of escalations
})


class NothingStrands(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # One example's world: empty tables, an empty Redis db, fresh flaky handlers.
        Escalation.objects.all().delete()
        Wait.objects.all().delete()
        Step.objects.all().delete()
        Job.objects.all().delete()
        get_queue().connection.flushdb()
        _FAILED_ONCE.clear()
        self.scheduled = 0

    # --- what happens to jobs ---------------------------------------------------------

    @initialize(specs=st.lists(_JOB_SPEC, min_size=1, max_size=3), run_them=st.booleans())
    def first_jobs(self, specs, run_them):
        """Every example has work from the start, often already blocked on its waits and escalations."""
        for spec in specs:
            self.schedule(spec)
        if run_them:
            _drain()

    @rule(spec=_JOB_SPEC)
    def schedule(self, spec):
        self.scheduled += 1
        job_input = {"token": f"j{self.scheduled}", "timeout": spec["timeout"], "on_reject": spec["on_reject"]}
        if spec["kind"] == "parent":
            job_input["children"] = spec["children"]
        scheduler.schedule(FLOWS[spec["kind"]], job_input)

    @rule(index=_INDEX)
    def run_one_message(self, index):
        queued = _queued()
        if not queued:
            return
        # Choose by job (in token order), not by position: positions depend on the sweep's row order.
        by_job = {}
        for rq_id, job_id in queued:
            by_job.setdefault(job_id, rq_id)
        jobs = sorted(Job.objects.filter(pk__in=list(by_job)), key=_token_key)
        if not jobs:  # messages for jobs of no row: run one anyway (it must do nothing)
            _perform(queued[0][0])
            return
        _perform(by_job[str(_pick(jobs, index).pk)])

    @rule()
    def run_every_message(self):
        _drain()

    @precondition(lambda self: Wait.objects.filter(type__in=["event", "escalation"], status="pending").exists())
    @rule(index=_INDEX, answer=st.sampled_from(["approve", "reject"]), value=st.sampled_from([None, "paid"]))
    def a_person_answers(self, index, answer, value):
        """The chosen pending wait: an escalation is approved or rejected, an event resolved with ``value``."""
        waits = sorted(
            Wait.objects.filter(type__in=["event", "escalation"], status="pending").select_related("job"),
            key=lambda w: (_token_key(w.job), w.type),
        )
        wait = _pick(waits, index)
        if wait.type == "event":
            event("answer: resolve an event wait")
            scheduler.resolve_blocking_job(wait.job_id, wait.wait_id, value)
            return
        escalation = Escalation.objects.get(job_id=wait.job_id, wait_id=wait.wait_id)
        event(f"answer: {answer} an escalation, on_reject={escalation.on_reject}")
        scheduler.reply_to_escalation(
            escalation.pk, {"ok": answer == "approve"}, "approved" if answer == "approve" else "rejected",
            user="alice",
        )

    @precondition(lambda self: Job.objects.exists())
    @rule(index=_INDEX, action=st.sampled_from(["cancel", "fail", "retry"]))
    def an_operator_acts(self, index, action):
        """cancel_job or fail_job on an unfinished job, retry_job on a failed one (nothing if there is none)."""
        if action == "retry":
            failed = _sorted_jobs(status="failed")
            if failed:
                job = _pick(failed, index)
                event(f"operator: retry a job failed by {job.error_type}")
                scheduler.retry_job(job.pk)
            return
        unfinished = _sorted_jobs(status__in=["pending", "running", "blocking"])
        if not unfinished:
            return
        job = _pick(unfinished, index)
        event(f"operator: {action} a {job.status} job")
        if action == "cancel":
            scheduler.cancel_job(job.pk)
        else:
            scheduler.fail_job(job.pk, "an operator failed it")

    @rule()
    def sweep(self):
        self._sweep()

    @rule(then_sweep=st.booleans())
    def time_passes(self, then_sweep):
        """A day goes by (leases expire, waits time out, unclaimed sends become due); often a sweep follows."""
        _time_passes()
        if then_sweep:
            self._sweep()

    def _sweep(self):
        counts = scheduler.cleanup_orphaned_jobs()
        assert counts["skipped"] is False  # nothing else sweeps here
        for what in ("expired_leases", "requeued", "timed_out_waits"):
            if counts[what]:
                event(f"sweep: {what}")

    @rule()
    def lose_the_queue(self):
        get_queue().connection.flushdb()  # this test's own Redis db only

    @precondition(lambda self: Job.objects.filter(status__in=["pending", "running"]).exists())
    @rule(index=_INDEX)
    def a_worker_died_here(self, index):
        """A worker claims the job and dies before running anything: only its lease expiring frees the job."""
        job = _pick(_sorted_jobs(status__in=["pending", "running"]), index)
        event(f"a_worker_died_here: claimed={transitions.claim(job.pk, owner=DEAD_WORKER) is not None}")

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def rows_are_consistent(self):
        jobs = {job.pk: job for job in Job.objects.all()}
        pending_waits = list(Wait.objects.filter(status="pending"))
        pending_escalations = list(Escalation.objects.filter(status="pending"))
        waits_of: dict = {}
        for wait in pending_waits:
            waits_of.setdefault(wait.job_id, []).append(wait)
        problems = []

        for job in jobs.values():
            if job.status in FINISHED_STATUSES:
                if job.pk in waits_of:
                    problems.append((job.pk, f"{job.status} job has pending waits {waits_of[job.pk]}"))
                if job.status == JobStatus.FAILED and job.error_type not in EXPECTED_FAILURES:
                    problems.append((job.pk, f"failed for a reason this scenario cannot cause: "
                                             f"{job.error_type}: {job.error}"))
            elif job.status == JobStatus.RUNNING:
                if not (job.lease_owner and job.lease_expires_at):
                    problems.append((job.pk, "running without a lease"))
            elif job.status == JobStatus.BLOCKING:
                if job.pk not in waits_of:
                    problems.append((job.pk, "blocking without a pending wait"))
            elif job.status == JobStatus.PENDING:
                if job.enqueued_at is None:
                    problems.append((job.pk, "pending and never sent (no enqueued_at)"))
            else:
                problems.append((job.pk, f"unknown status {job.status!r}"))

        for escalation in pending_escalations:
            job = jobs[escalation.job_id]
            if job.status in FINISHED_STATUSES:
                problems.append((job.pk, f"{job.status} job has a pending escalation {escalation.pk}"))
            if not any(w.wait_id == escalation.wait_id and w.type == "escalation" for w in waits_of.get(job.pk, [])):
                problems.append((job.pk, f"pending escalation {escalation.pk} whose wait is not pending"))

        for wait in pending_waits:
            if wait.type == "spawn":
                child = jobs.get(wait.child_id)
                if child is None:
                    problems.append((wait.job_id, f"pending spawn wait {wait.wait_id} has no child"))
                elif child.status in FINISHED_STATUSES:
                    problems.append((wait.job_id, f"pending spawn wait {wait.wait_id} on {child.status} child "
                                                  f"{child.pk}: the parent is never told"))
            elif wait.type == "escalation":
                if not any(e.job_id == wait.job_id and e.wait_id == wait.wait_id for e in pending_escalations):
                    problems.append((wait.job_id, f"pending escalation wait {wait.wait_id} without a pending "
                                                  "Escalation: nobody can answer it"))

        twice = list(
            Step.objects.filter(error="").values("job_id", "number", "phase")
            .annotate(n=Count("id")).filter(n__gt=1)
        )
        for row in twice:
            problems.append((row["job_id"], f"successful step committed {row['n']} times: {row}"))

        if problems:
            lines = [f"job {job_id}: {what}" for job_id, what in problems]
            raise AssertionError("\n".join(lines) + "\n\n" + _describe({job_id for job_id, _ in problems}))

    # --- liveness ---------------------------------------------------------------------------

    def teardown(self):
        """Let the world settle: people answer, time passes, the sweep and a worker run. Every job must end."""
        unfinished = Job.objects.exclude(status__in=FINISHED_STATUSES).count()
        event(f"unfinished jobs before settling: {'0' if not unfinished else '1-4' if unfinished < 5 else '5+'}")
        last = None
        for _ in range(LIVENESS_ROUNDS):
            if not Job.objects.exclude(status__in=FINISHED_STATUSES).exists():
                break
            now = _progress_marker()
            if now == last:
                break  # a whole round changed nothing: the next ones would not either
            last = now
            for wait in sorted(Wait.objects.filter(type="event", status="pending").select_related("job"),
                               key=lambda w: _token_key(w.job)):
                scheduler.resolve_blocking_job(wait.job_id, wait.wait_id, "late")
            for escalation in sorted(Escalation.objects.filter(status="pending").select_related("job"),
                                     key=lambda e: _token_key(e.job)):
                scheduler.reply_to_escalation(escalation.pk, {"ok": True}, "approved", user="alice")
            _time_passes()
            scheduler.cleanup_orphaned_jobs()
            _drain()
        self.rows_are_consistent()
        for status, error_type in sorted(set(Job.objects.values_list("status", "error_type"))):
            event(f"a job ended {status} {error_type}".rstrip())
        stranded = list(Job.objects.exclude(status__in=FINISHED_STATUSES).values_list("pk", flat=True))
        assert not stranded, (
            f"{len(stranded)} job(s) stranded: rounds of answering, time passing, sweeping and running the "
            f"queue (at most {LIVENESS_ROUNDS}, until one changed nothing) left them unfinished:\n"
            f"{_describe(stranded)}"
        )


def _wake_heartbeat() -> None:
    """Make this process's heartbeat thread start a new sleep now, of the LEASE_SECONDS / 3 now in force."""
    tick = Heartbeat.for_process()._tick  # "a sleep that tests could cut short"
    tick.set()
    tick.clear()


@pytest.fixture(autouse=True)
def _rq_mode(redis_conn):
    """rq execution on the test's own Redis db (emptied by ``redis_conn``); jobs run when a rule says so."""
    with override_settings(ENVOY=RQ_MODE):
        _wake_heartbeat()
        yield
    _wake_heartbeat()  # back to the usual cadence for the tests that follow


TestNothingStrands = NothingStrands.TestCase
TestNothingStrands.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
