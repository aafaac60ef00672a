"""What ``envoy_demo`` prints: live progress from Envoy's signals, the summary, the open escalations.

Kept apart from the command so the command reads as the tour's steps, and
so each printed line has one place where its shape is decided.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.urls import NoReverseMatch, reverse

from envoy_django import signals
from envoy_django.models import Escalation, EscalationStatus, Job, JobStatus, Step

Write = Callable[[str], None]

FLOW_WIDTH = 18
ESCALATIONS_PATH = "/admin/envoy_django/escalation/"
# Admin URL names tried for an escalation's own page, best first.
ESCALATION_URL_NAMES = ("admin:envoy_django_escalation_reply", "admin:envoy_django_escalation_change")
WAIT_WORDS = {"spawn": ("child job", "child jobs"), "escalation": ("person", "people")}


def short(value: Any, width: int = 60) -> str:
    """A value on one line: strings as they are, the rest as compact JSON."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def job_label(job: Job) -> str:
    return f"{job.flow:<{FLOW_WIDTH}} {str(job.pk)[:8]}"


class ProgressPrinter:
    """Prints a line per committed step and per job outcome, from Envoy's signals.

    Signals fire in the process that runs the job: the demo command with
    immediate execution (and with the burst worker it runs under Redis), and
    the ``runserver`` it starts, where approving in the admin resumes the
    job - so the newcomer watches it finish in the same console.
    """

    def __init__(self, write: Write) -> None:
        self.write = write
        # The output each job showed last: repeating an unchanged output is noise.
        self._shown: dict[str, Any] = {}
        self._receivers: list[tuple[Any, Callable[..., None]]] = [
            (signals.step_finished, self.on_step),
            (signals.job_blocked, self.on_blocked),
            (signals.escalation_created, self.on_escalation),
            (signals.job_done, self.on_done),
            (signals.job_failed, self.on_failed),
        ]

    def connect(self) -> None:
        for signal, receiver in self._receivers:
            signal.connect(receiver, sender=Job, dispatch_uid=f"envoy-demo-{receiver.__name__}")

    def disconnect(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(sender=Job, dispatch_uid=f"envoy-demo-{receiver.__name__}")

    def _new_output(self, job: Job, output: Any) -> str:
        if output is None or self._shown.get(str(job.pk)) == output:
            return ""
        self._shown[str(job.pk)] = output
        return short(output, 50)

    def on_step(self, job: Job, step: Step, **kwargs: Any) -> None:
        where = f"{step.state}.{step.phase}" + (f" -> {step.next_state}" if step.next_state else "")
        output = self._new_output(job, step.output)
        line = f"    {job_label(job)}  step {step.number}  {where:<24}" + (f"  output: {output}" if output else "")
        self.write(line.rstrip())

    def on_blocked(self, job: Job, waits: list[str], **kwargs: Any) -> None:
        # Wait ids start with their kind: spawn-..., escalation-..., or a flow's own event name.
        kinds = Counter(wait_id.split("-", 1)[0] for wait_id in waits)
        counts = [f"{n} {WAIT_WORDS.get(kind, ('outside event', 'outside events'))[n > 1]}"
                  for kind, n in kinds.items()]
        self.write(f"    {job_label(job)}  blocks: waits for {', '.join(counts)}")

    def on_escalation(self, job: Job, escalation: Escalation, **kwargs: Any) -> None:
        first_line = escalation.message.splitlines()[0] if escalation.message else ""
        self.write(f"    {job_label(job)}  asks {escalation.user!r}: {short(first_line, 70)}")

    def on_done(self, job: Job, **kwargs: Any) -> None:
        self.write(f"    {job_label(job)}  DONE  {self._new_output(job, job.output)}".rstrip())

    def on_failed(self, job: Job, error: str = "", **kwargs: Any) -> None:
        self.write(f"    {job_label(job)}  FAILED  {short(error, 70)}")


def print_summary(write: Write, job_ids: list[str]) -> None:
    """One row per job, children indented under their parent in the order they were spawned."""
    write(f"  {'flow':<{FLOW_WIDTH + 2}} {'job':<8}  {'status':<9} output")
    write(f"  {'-' * (FLOW_WIDTH + 2)} {'-' * 8}  {'-' * 9} {'-' * 50}")
    jobs = {str(job.pk): job for job in Job.objects.filter(pk__in=job_ids)}
    for job in (jobs[job_id] for job_id in job_ids):
        _write_row(write, job, "")
        # The wait rows keep the spawn order; the children's timestamps tie.
        for wait in job.waits.filter(child__isnull=False).select_related("child").order_by("pk"):
            _write_row(write, wait.child, "- ")


def _write_row(write: Write, job: Job, indent: str) -> None:
    if job.status == JobStatus.BLOCKING:
        pending = job.escalations.filter(status=EscalationStatus.PENDING).first()
        outcome: Any = f"(waiting for {pending.user!r} to approve)" if pending else "(waiting)"
    elif job.status == JobStatus.FAILED:
        outcome = f"error: {job.error}"
    else:
        outcome = job.output
    flow = f"{indent}{job.flow}"
    write(f"  {flow:<{FLOW_WIDTH + 2}} {str(job.pk)[:8]}  {job.status:<9} {short(outcome, 60)}")


def print_escalations(write: Write, job_ids: list[str], base_url: str) -> None:
    """The open questions of this run, each with the admin page to answer it."""
    pending = Escalation.objects.filter(job_id__in=job_ids, status=EscalationStatus.PENDING).select_related("job")
    for escalation in sorted(pending, key=lambda e: job_ids.index(str(e.job_id))):
        write(f"  {escalation.job.flow} {str(escalation.job_id)[:8]} asks {escalation.user!r}:")
        for line in escalation.message.splitlines():
            write(f"      {line}")
        write(f"    reply: {base_url}{escalation_path(escalation)}")
    older = Escalation.objects.filter(status=EscalationStatus.PENDING).exclude(job_id__in=job_ids).count()
    if older:
        write(f"  (and {older} from earlier runs)")
    write(f"  all escalations: {base_url}{ESCALATIONS_PATH}")


def escalation_path(escalation: Escalation) -> str:
    """The admin's page for this escalation if the admin names one, else the escalation list."""
    for name in ESCALATION_URL_NAMES:
        try:
            return reverse(name, args=[escalation.pk])
        except NoReverseMatch:
            continue
    return ESCALATIONS_PATH
