"""Signals arrive after commit, in order, with the documented arguments."""

import pytest
from django.db import transaction

from envoy_django import scheduler, signals
from envoy_django.models import Escalation, Job

pytestmark = pytest.mark.django_db(transaction=True)

ALL = [
    "job_scheduled", "job_started", "step_finished", "job_blocked", "job_resumed",
    "job_done", "job_failed", "job_cancelled", "escalation_created", "escalation_replied",
]


@pytest.fixture
def received():
    events = []
    receivers = []
    for name in ALL:
        def receiver(sender, job, _name=name, **kwargs):
            assert sender is Job
            # Sent after commit: the row is visible with the state the signal reports.
            events.append((_name, job.flow, Job.objects.get(pk=job.pk).status, sorted(kwargs)))
        getattr(signals, name).connect(receiver)
        receivers.append((name, receiver))
    yield events
    for name, receiver in receivers:
        getattr(signals, name).disconnect(receiver)


def test_lifecycle_signals(received):
    job_id = scheduler.schedule("hello")
    assert [e[0] for e in received] == ["job_scheduled", "job_started", "step_finished", "step_finished", "job_done"]
    assert received[2][3] == ["signal", "step"]
    assert received[-1][2] == "done"
    assert scheduler.get_job(job_id).status == "done"


def test_blocking_escalation_and_failure_signals(received):
    job_id = scheduler.schedule("family", {"children": [1]})
    names = [e[0] for e in received if e[1] == "family"]
    assert names[-1] == "job_blocked"
    received.clear()
    scheduler.resolve_blocking_job(job_id, "payment", 1)
    assert [e[0] for e in received] == ["job_resumed", "step_finished", "escalation_created", "job_blocked"]
    received.clear()
    escalation = Escalation.objects.get(job_id=job_id)
    scheduler.reply_to_escalation(escalation.pk, {"reason": "b"}, "rejected", user="bob")
    assert [e[0] for e in received] == ["escalation_replied", "job_failed"]


def test_no_signal_when_the_transaction_rolls_back(received):
    with pytest.raises(RuntimeError), transaction.atomic():
        scheduler.schedule("hello")
        raise RuntimeError
    assert received == []


def test_cancel_signal(received):
    job_id = scheduler.schedule("parent_of_waiting_child")
    received.clear()
    scheduler.cancel_job(job_id)
    assert sorted(e[0] for e in received) == ["job_cancelled", "job_cancelled"]
