"""Signals other apps connect to. All are sent after the transaction commits.

Every signal is sent with ``sender=Job`` (the model class) and ``job`` (the
Job instance as committed). Extra keyword arguments are listed beside each.
"""

from django.dispatch import Signal

job_scheduled = Signal()  # job
job_started = Signal()  # job: first claimed by a worker
step_finished = Signal()  # job, step (the Step row)
job_blocked = Signal()  # job, waits (list of wait ids)
job_resumed = Signal()  # job: its last wait resolved
job_done = Signal()  # job
job_failed = Signal()  # job, error (str)
job_retrying = Signal()  # job, error (str), attempt (the failed one), run_after (None: now)
job_cancelled = Signal()  # job
escalation_created = Signal()  # job, escalation
escalation_replied = Signal()  # job, escalation
