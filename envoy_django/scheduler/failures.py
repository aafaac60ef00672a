"""How a failure is stored on a job and told to the logs.

A retry is logged at WARNING and a job's final failure at ERROR, with the
exception and ``job_id``, ``flow`` and ``state`` in ``extra``, so a site's
logging (Sentry, JSON logs) can group and page on them.
"""

from __future__ import annotations

import logging
import traceback as tb_module
from typing import TYPE_CHECKING

from envoy_django.flow.values import clip
from envoy_django.payloads import storable_text

if TYPE_CHECKING:
    from envoy_django.models import Job

log = logging.getLogger("envoy_django.jobs")

MAX_ERROR_TYPE = 200  # Job.error_type


def format_exception(exc: BaseException) -> tuple[str, str, str]:
    """(type name, message, traceback) of the exception a user cares about, storable as text."""
    original = getattr(exc, "original", None) or exc
    try:
        message = str(exc)
    except Exception:  # a hostile __str__ must not hide the failure
        message = f"<{type(exc).__name__}>"
    return (
        clip(type(original).__qualname__, MAX_ERROR_TYPE - 40),
        storable_text(message),
        storable_text("".join(tb_module.format_exception(type(original), original, original.__traceback__))),
    )


def job_extra(job: Job) -> dict[str, str]:
    return {"job_id": str(job.pk), "flow": job.flow, "state": job.state}


def log_retry(job: Job, message: str, attempt: int, max_retries: int, delay: float | None) -> None:
    when = f" in {delay:.2f}s" if delay else " now"
    log.warning(
        "job %s (%s, state %r) failed attempt %d of %d; retrying%s: %s",
        job.pk, job.flow, job.state, attempt, max_retries + 1, when, message, extra=job_extra(job),
    )


def log_failed(job: Job, message: str, exc: BaseException | None = None) -> None:
    log.error(
        "job %s (%s, state %r) failed: %s", job.pk, job.flow, job.state, message,
        exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None,
        extra=job_extra(job),
    )
