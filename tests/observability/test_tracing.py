"""OpenTelemetry: a span per job run and per transition, continuing the trace ``schedule()`` was called in.

The SDK's in-memory exporter records what a site's exporter would send.
A tracer provider can be set once per process, so this module sets it for
the whole session and each test clears the exporter.
"""

from __future__ import annotations

import pytest
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from envoy_django import scheduler, tracing
from envoy_django.models import Job
from tests.testapp import flows

pytestmark = pytest.mark.django_db(transaction=True)

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans():
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def by_name(exporter):
    return {span.name: span for span in exporter.get_finished_spans()}


def test_a_job_continues_the_trace_it_was_scheduled_in(spans):
    with trace.get_tracer("a-site").start_as_current_span("POST /orders") as request:
        job_id = scheduler.schedule("hello", "you")
    recorded = spans.get_finished_spans()
    run = next(span for span in recorded if span.name == "envoy.job hello")
    steps = [span for span in recorded if span.name.startswith("envoy.transition")]
    request_context = request.get_span_context()
    assert run.context.trace_id == request_context.trace_id
    assert run.parent.span_id == request_context.span_id
    assert run.attributes["envoy.job_id"] == job_id and run.attributes["envoy.flow"] == "hello"
    assert run.attributes["envoy.flow_version"] == 1 and run.attributes["envoy.worker"]
    assert [s.attributes["envoy.state"] for s in steps] == ["Start", "End"]
    assert {s.parent.span_id for s in steps} == {run.context.span_id}
    assert all(s.attributes["envoy.attempt"] == 1 and s.attributes["envoy.phase"] for s in steps)
    traceparent = f"00-{request_context.trace_id:032x}-{request_context.span_id:016x}-"
    assert Job.objects.get(pk=job_id).trace_parent.startswith(traceparent)


def test_the_trace_crosses_the_queue_to_a_worker(spans, redis_conn):
    from envoy_django.testing.worker import drain

    with override_settings(ENVOY={"EXECUTION": "rq"}):
        with trace.get_tracer("a-site").start_as_current_span("POST /orders") as request:
            job_id = scheduler.schedule("ten_states")
        assert not [s for s in spans.get_finished_spans() if s.name.startswith("envoy.")]
        drain()  # a worker, later, outside the request
    run = by_name(spans)["envoy.job ten_states"]
    assert run.context.trace_id == request.get_span_context().trace_id
    assert len([s for s in spans.get_finished_spans() if s.name.startswith("envoy.transition")]) == 10
    assert Job.objects.get(pk=job_id).status == "done"


def test_a_failed_attempt_is_an_error_span_and_a_child_gets_its_parents_trace(spans):
    flows.calls.clear()
    with override_settings(ENVOY={"MAX_RETRIES": 1, "RETRY_BACKOFF": 0}):
        scheduler.schedule("flaky", 1)
    tries = [s for s in spans.get_finished_spans() if s.name == "envoy.transition Try"]
    assert [s.status.status_code for s in tries] == [StatusCode.ERROR, StatusCode.UNSET]
    assert [s.attributes["envoy.attempt"] for s in tries] == [1, 2]

    spans.clear()
    parent = scheduler.schedule("family", {"children": [1]})
    child = Job.objects.get(parent_id=parent)
    recorded = spans.get_finished_spans()
    parent_run = next(s for s in recorded if s.name == "envoy.job family")
    child_run = next(s for s in recorded if s.name == f"envoy.job {child.flow}")
    assert child_run.context.trace_id == parent_run.context.trace_id  # spawned inside the parent's transition


def test_no_span_no_trace_parent_and_without_opentelemetry_nothing_is_traced(spans, monkeypatch):
    job_id = scheduler.schedule("hello")
    assert Job.objects.get(pk=job_id).trace_parent == ""
    assert by_name(spans)["envoy.job hello"].parent is None  # a root of its own

    spans.clear()
    monkeypatch.setattr(tracing, "available", lambda: False)
    job_id = scheduler.schedule("hello")
    assert Job.objects.get(pk=job_id).status == "done" and spans.get_finished_spans() == ()
