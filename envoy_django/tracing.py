"""OpenTelemetry traces: a span per job run, a child span per transition, the caller's trace carried into the job.

Only with ``opentelemetry-api`` installed (the ``[otel]`` extra) and a
tracer provider configured by the site; without the package nothing is
imported and each hook is one cached check. The trace context crosses the
queue as the job's ``trace_parent`` column (a W3C ``traceparent``), written
with the job's row, so a request's trace goes on in the worker whichever
carrier (RQ, a Tasks backend, the calling process) took the message.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envoy_django.flow import Context
    from envoy_django.models import Job

TRACER_NAME = "envoy_django"


@cache
def available() -> bool:
    return importlib.util.find_spec("opentelemetry") is not None


def current_trace_parent() -> str:
    """The ``traceparent`` of the span active in the caller, for a new job's row ("" if none)."""
    if not available():
        return ""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")


def _of_job(job: Job, owner: str) -> dict[str, Any]:
    return {"envoy.job_id": str(job.pk), "envoy.flow": job.flow, "envoy.flow_version": job.flow_version,
            "envoy.worker": owner}


@contextmanager
def job_run(job: Job, owner: str) -> Iterator[None]:
    """The span of one claimed run of a job, a child of the trace the job was scheduled in."""
    if not available():
        yield
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract({"traceparent": job.trace_parent}) if job.trace_parent else None
    with trace.get_tracer(TRACER_NAME).start_as_current_span(
            f"envoy.job {job.flow}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=_of_job(job, owner)):
        yield


@contextmanager
def transition(job: Job, ctx: Context, owner: str) -> Iterator[Any]:
    """The span of one transition (one ``flow.advance``), inside the run's span; it yields the span or None."""
    if not available():
        yield None
        return
    from opentelemetry import trace

    attributes = {**_of_job(job, owner), "envoy.state": ctx.state(), "envoy.phase": str(ctx.phase()),
                  "envoy.step": ctx.step(), "envoy.attempt": job.attempts + 1}
    with trace.get_tracer(TRACER_NAME).start_as_current_span(f"envoy.transition {ctx.state()}",
                                                             attributes=attributes) as span:
        yield span
