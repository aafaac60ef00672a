"""Jobs, their state history, their waits and their escalations.

PostgreSQL is the source of truth: a job can always be resumed from its row
(``context`` is the checkpoint) and its ``Wait`` rows, whatever Redis lost.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from envoy_django.concurrency import MAX_KEY
from envoy_django.flow.context import MAX_GROUP, MAX_NAME, MAX_USERNAME, MAX_WAIT_ID

MAX_IDEMPOTENCY_KEY = 255


class JobStatus(models.TextChoices):
    """The original Envoy's job statuses."""

    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    BLOCKING = "blocking", "blocking"
    DONE = "done", "done"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


FINISHED_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
UNFINISHED_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.BLOCKING)


class SlotStatus(models.TextChoices):
    """A job's place under its flow's concurrency limit (``register(..., max_active=)``)."""

    NONE = "", "none"
    WAITING = "waiting", "waiting for a slot"
    HELD = "held", "holds a slot"


class WaitType(models.TextChoices):
    EVENT = "event", "outside event"
    SPAWN = "spawn", "child job"
    ESCALATION = "escalation", "escalation"


class WaitStatus(models.TextChoices):
    PENDING = "pending", "pending"
    RESOLVED = "resolved", "resolved"
    DONE = "done", "done"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"
    APPROVED = "approved", "approved"
    REJECTED = "rejected", "rejected"
    TIMEOUT = "timeout", "timeout"


class EscalationStatus(models.TextChoices):
    PENDING = "pending", "pending"
    APPROVED = "approved", "approved"
    REJECTED = "rejected", "rejected"
    CANCELLED = "cancelled", "cancelled"


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    flow = models.CharField(max_length=MAX_NAME)
    flow_version = models.PositiveIntegerField(
        default=1, db_default=1, help_text="The version of the flow the job started on, and runs on to its end."
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    state = models.CharField(max_length=MAX_NAME, blank=True, help_text="The state the job is in or will run next.")
    step = models.PositiveIntegerField(default=1)
    max_steps = models.PositiveIntegerField(default=25)
    context = models.JSONField(default=dict, help_text="The checkpoint: the serialized flow context.")
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    traceback = models.TextField(blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    parent_wait_id = models.CharField(max_length=MAX_WAIT_ID, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Failed attempts of the current phase.")
    claims = models.PositiveIntegerField(
        default=0, help_text="Claims since the job last committed anything; too many fail it as a poison job."
    )
    progress = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=500, blank=True)
    # Unique by a partial constraint, not unique=True: that would also build a varchar_pattern_ops
    # index for LIKE queries nobody makes, and index the NULL of every job without a key; each is
    # one more index entry for every job written.
    idempotency_key = models.CharField(max_length=MAX_IDEMPOTENCY_KEY, null=True, blank=True)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    run_after = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the job was last handed to a worker; the sweep re-sends it if unclaimed."
    )
    concurrency_key = models.CharField(
        max_length=MAX_KEY, null=True, blank=True,
        help_text="The key whose slots the job takes, if its flow has max_active ('' for the flow as a whole).",
    )
    slot = models.CharField(
        max_length=8, blank=True, choices=SlotStatus.choices, default=SlotStatus.NONE, db_default="",
        help_text="Of a flow with max_active: 'held' while the job counts as active, 'waiting' for a slot.",
    )
    pending_reason = models.CharField(
        max_length=500, blank=True, db_default="",
        help_text="Why a pending job is not running yet (a slot, a rate limit).",
    )
    trace_parent = models.CharField(
        max_length=100, blank=True, default="", db_default="",
        help_text="The W3C traceparent of the span that scheduled the job, so its runs continue that trace.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["idempotency_key"], condition=Q(idempotency_key__isnull=False),
                                               name="envoy_job_idempotency_key")]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="envoy_job_created"),
            models.Index(fields=["status", "-created_at"], name="envoy_job_status_created"),
            models.Index(fields=["flow", "-created_at"], name="envoy_job_flow_created"),
            models.Index(fields=["lease_expires_at"], condition=Q(status="running"), name="envoy_job_running_lease"),
            models.Index(fields=["run_after"], condition=Q(status="pending"), name="envoy_job_pending_due"),
            models.Index(fields=["enqueued_at"], condition=Q(status="pending"), name="envoy_job_pending_sent"),
            models.Index(fields=["updated_at"], condition=Q(status="blocking"), name="envoy_job_blocking"),
            # The overview's last hour of ends, and retention's oldest finished jobs.
            models.Index(fields=["finished_at", "status"], condition=Q(finished_at__isnull=False),
                         name="envoy_job_finished"),
            # The claim counts a key's held slots and its waiters; an end wakes the oldest waiter.
            models.Index(
                fields=["flow", "concurrency_key", "slot", "created_at"],
                condition=Q(slot__in=["held", "waiting"]),
                name="envoy_job_slots",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.flow} {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def duration(self) -> dt.timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at


class Step(models.Model):
    """One executed phase: the job's history, in commit order by ``pk``.

    A successful (job, number, phase) is unique: the database itself refuses a
    transition committed twice.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of its own: envoy_step_job (job, id) serves every lookup by job, and each
    # transition's Step would otherwise write one more index entry.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="steps", db_index=False)
    number = models.PositiveIntegerField(help_text="ctx.step() when the phase ran.")
    state = models.CharField(max_length=MAX_NAME)
    phase = models.CharField(max_length=16)
    next_state = models.CharField(max_length=MAX_NAME, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    notes = models.JSONField(default=list, blank=True, help_text="What the step recorded with ctx.note().")
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        ordering = ["job", "id"]
        indexes = [models.Index(fields=["job", "id"], name="envoy_step_job")]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "number", "phase"], condition=Q(error=""), name="envoy_step_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.state}.{self.phase} #{self.number}"

    @property
    def duration(self) -> dt.timedelta:
        return self.finished_at - self.started_at


class Wait(models.Model):
    """Something a blocking job waits for: a child, an outside event or a person."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: envoy_wait_unique (job, wait_id) and envoy_wait_job_status lead with it.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="waits", db_index=False)
    wait_id = models.CharField(max_length=MAX_WAIT_ID)
    type = models.CharField(max_length=16, choices=WaitType.choices)
    status = models.CharField(max_length=16, choices=WaitStatus.choices, default=WaitStatus.PENDING)
    params = models.JSONField(default=dict, blank=True)
    value = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    child = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "wait_id"], name="envoy_wait_unique")]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="envoy_wait_expiry"),
            models.Index(fields=["job", "status"], name="envoy_wait_job_status"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.wait_id} ({self.status})"

    def as_result(self) -> dict:
        return {"status": self.status, "value": self.value, "error": self.error or None}


class Escalation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="escalations")
    wait_id = models.CharField(max_length=MAX_WAIT_ID)
    user = models.CharField(max_length=MAX_USERNAME, blank=True, help_text="Username of the person asked.")
    group = models.CharField(
        max_length=MAX_GROUP, blank=True, help_text="Name of the group asked: any of its members may answer."
    )
    message = models.TextField()
    inputs = models.JSONField(default=list, blank=True)
    on_reject = models.CharField(max_length=16, default="fail")
    status = models.CharField(max_length=16, choices=EscalationStatus.choices, default=EscalationStatus.PENDING)
    response = models.JSONField(null=True, blank=True)
    replied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    replied_by_username = models.CharField(max_length=MAX_USERNAME, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("reply_escalation", "Can approve or reject escalations")]
        indexes = [
            models.Index(fields=["status", "user", "-created_at"], name="envoy_esc_status_user"),
            models.Index(fields=["status", "group", "-created_at"], name="envoy_esc_status_group"),
            models.Index(fields=["status", "-created_at"], name="envoy_esc_status"),
        ]

    def __str__(self) -> str:
        return f"escalation to {self.user} ({self.status})"


class Schedule(models.Model):
    """A cron schedule: a job of ``flow`` at every tick of ``cron`` in ``timezone`` (``scheduler.add_schedule``)."""

    # Before the field named ``timezone``, which shadows django.utils.timezone from there on in this class body.
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    name = models.CharField(max_length=MAX_NAME, unique=True)
    flow = models.CharField(max_length=MAX_NAME)
    cron = models.CharField(max_length=200, help_text="Five fields: minute hour day-of-month month day-of-week.")
    input = models.JSONField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC", help_text="The cron's time zone, e.g. Europe/Amsterdam.")
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="The next tick; empty while paused.")
    last_run_at = models.DateTimeField(null=True, blank=True, help_text="The tick of the last job.")
    last_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["next_run_at"], name="envoy_schedule_due", condition=Q(enabled=True))]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron}, {self.timezone})"


class Overview(Job):
    """No table: the admin's "Envoy overview" page, listed beside the models (see admin/overview.py)."""

    class Meta:
        proxy = True
        verbose_name = "Envoy overview"
        verbose_name_plural = "Envoy overview"
        default_permissions = ()
