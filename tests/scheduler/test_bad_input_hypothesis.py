"""Bad input, generated and hand-picked: each call works or raises an EnvoyError, and no job is half-written.

test_errors.py covers the named cases one by one; this file throws generated
values (JSON, and what is not JSON: datetimes, sets, NaN, bytes, tuples,
non-string keys, NUL characters) at ``schedule``, at a handler's output and
at ``reply_to_escalation``, checks each result against an independent
reference of what must be accepted, and covers the cases of the list that
test_errors.py does not: a router naming a missing state, a plugin
dependency cycle, an escalation input of unknown type, and oversized
outputs, replies and event values.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envoy_django import EnvoyError, StateFlow, register, scheduler
from envoy_django.exceptions import (
    EscalationError,
    FlowDefinitionError,
    PayloadError,
    PayloadTooLargeError,
)
from envoy_django.models import Escalation, Job, Step, Wait
from envoy_django.registry import unregister
from tests.scheduler.conftest import snapshot_rows
from tests.support import run_in_one_state

pytestmark = pytest.mark.django_db(transaction=True)

# Each example may write rows (a job per schedule); the rows of earlier
# examples stay, so "unchanged" compares against a snapshot taken per example.
EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- what is JSON, independently of envoy_django's own checks -------------------

_text = st.text(max_size=12)  # includes NUL and lone surrogates, which PostgreSQL cannot store
json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text
non_json_leaves = st.one_of(
    st.datetimes(),
    st.dates(),
    st.sets(st.integers(), max_size=3),
    st.frozensets(st.integers(), max_size=2),
    st.just(math.nan),
    st.sampled_from([math.inf, -math.inf]),
    st.binary(max_size=6),
    st.tuples(st.integers()),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.uuids(),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),  # non-string keys
    st.builds(object),
)


def json_values(leaves: st.SearchStrategy = json_leaves) -> st.SearchStrategy:
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
        max_leaves=8,
    )


any_values = json_values(json_leaves | non_json_leaves)


def storable_json(value: Any) -> bool:
    """True if ``value`` is plain JSON that reads back exactly from a JSON column on every backend."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(storable_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and storable_json(k) and storable_json(v) for k, v in value.items())
    return False


def same_json(stored: Any, value: Any) -> bool:
    """``stored`` reads back as ``value`` (types included).

    One allowance, a PostgreSQL property: jsonb keeps numbers as numeric, so
    a float JSON writes in exponent form (5.191662930700247e+16) reads back
    as the int 51916629307002470; it is the same float once converted.
    """
    if isinstance(value, float) and isinstance(stored, int) and not isinstance(stored, bool):
        return float(stored) == value
    if isinstance(value, list):
        return isinstance(stored, list) and len(stored) == len(value) and all(map(same_json, stored, value))
    if isinstance(value, dict):
        return isinstance(stored, dict) and stored.keys() == value.keys() and all(
            same_json(stored[k], v) for k, v in value.items())
    return type(stored) is type(value) and stored == value


def assert_whole(job: Job) -> None:
    """A job row the scheduler finished writing: settled, its fields consistent."""
    assert job.flow and job.state, job
    assert job.status in ("done", "failed", "cancelled", "blocking"), job.status
    if job.status in ("done", "blocking"):
        assert job.context, job  # a job that failed in its first phase has no checkpoint yet
    assert not job.lease_owner and job.lease_expires_at is None
    if job.status in ("done", "failed", "cancelled"):
        assert job.finished_at is not None
    if job.status == "failed":
        assert job.error
    assert Step.objects.filter(job_id=job.pk).exists()


# --- flows used here -----------------------------------------------------------

_emitted: dict[str, Any] = {}


def _emit(ctx):
    ctx.output(_emitted["value"])
    return ctx


@pytest.fixture
def emit_flow():
    register("emit_value", StateFlow([{"name": "Emit", "on_state": _emit}]))
    yield
    unregister("emit_value")


@pytest.fixture
def blocked_family():
    """A new "family" job per call, blocked on its escalation (see test_errors.py)."""

    def make() -> tuple[str, Escalation]:
        job_id = scheduler.schedule("family", {"children": [1]})
        scheduler.resolve_blocking_job(job_id, "payment", 1)
        return job_id, Escalation.objects.get(job_id=job_id)

    return make


# --- generated -------------------------------------------------------------------


@EXAMPLES
@given(value=any_values)
def test_schedule_accepts_json_and_refuses_the_rest_cleanly(value):
    before = snapshot_rows()
    try:
        job_id = scheduler.schedule("hello", value)
    except EnvoyError as exc:
        assert isinstance(exc, PayloadError), repr(exc)
        assert not storable_json(value), f"refused JSON {value!r}: {exc}"
        assert "input of flow 'hello'" in str(exc)
        assert snapshot_rows() == before
        return
    assert storable_json(value), f"accepted {value!r}"
    job = Job.objects.get(pk=job_id)
    assert_whole(job)
    assert job.status == "done"
    assert same_json(job.input, value), (job.input, value)


@EXAMPLES
@given(value=any_values)
def test_handler_output_is_json_or_the_job_fails_at_once_naming_the_state(emit_flow, value):
    _emitted["value"] = value
    job = Job.objects.get(pk=scheduler.schedule("emit_value"))
    assert_whole(job)
    if storable_json(value):
        assert job.status == "done", job.error
        assert same_json(job.output, value), (job.output, value)
    else:
        assert job.status == "failed"
        assert "'Emit'" in job.error, job.error
        assert job.error_type in ("PayloadError", "FlowError"), job.error_type
        assert Step.objects.filter(job_id=job.pk).count() == 1  # no retry: running again cannot fix it


def _reply_is_valid(values: Any, status: Any) -> bool:
    """The family flow's escalation: reason (select a/b, required), note (comment), ok (approve)."""
    if status not in ("approved", "rejected"):
        return False
    if values is None:
        return False  # reason is required
    if not isinstance(values, dict) or set(values) - {"reason", "note", "ok"}:
        return False
    reason, note, ok = values.get("reason"), values.get("note"), values.get("ok")
    if reason not in ("a", "b"):
        return False
    if note not in (None, "") and not (isinstance(note, str) and storable_json(note)):
        return False
    if ok not in (None, "") and not isinstance(ok, bool):
        return False
    if status == "approved" and ok is not True:
        return False  # approving needs the approve box ticked
    return True


reply_values = st.one_of(
    st.none(),
    any_values,
    st.fixed_dictionaries(
        {},
        optional={
            "reason": st.sampled_from(["a", "b", "", "c", None]) | any_values,
            "note": _text | st.none() | any_values,
            "ok": st.booleans() | st.none() | st.just("") | any_values,
            "nope": any_values,
        },
    ),
    # keys of mixed types: sorting them to name the unknown one raised TypeError
    st.dictionaries(st.sampled_from(["reason", "note", "ok", "nope"]) | _text | st.integers() | st.none(),
                    any_values, max_size=3),
)
reply_status = (
    st.sampled_from(["approved", "rejected"]) | st.sampled_from(["pending", "cancelled", "", "APPROVED"]) | any_values
)


@EXAMPLES
@given(values=reply_values, status=reply_status)
def test_reply_to_escalation_takes_valid_replies_and_refuses_the_rest_cleanly(blocked_family, values, status):
    job_id, escalation = blocked_family()
    before = snapshot_rows()
    try:
        scheduler.reply_to_escalation(escalation.pk, values, status, user="alice")
    except EnvoyError as exc:
        assert isinstance(exc, (EscalationError, PayloadError)), repr(exc)
        assert not _reply_is_valid(values, status), f"refused a valid reply {values!r} {status!r}: {exc}"
        assert str(escalation.pk) in str(exc) or "status must be" in str(exc), str(exc)
        assert snapshot_rows() == before
        return
    assert _reply_is_valid(values, status), f"accepted {values!r} {status!r}"
    escalation.refresh_from_db()
    assert escalation.status == status
    assert escalation.response["reason"] == values["reason"]
    job = Job.objects.get(pk=job_id)
    assert_whole(job)
    assert job.status == ("done" if status == "approved" else "failed")


# --- the rest of the list, one case each ---------------------------------------------


def test_router_naming_a_missing_state_is_refused_when_the_flow_is_built():
    with pytest.raises(FlowDefinitionError, match="router of state 'A' names 'Nowhere'"):
        StateFlow([{"name": "A", "on_state": lambda ctx: ctx, "router": {"next": "Nowhere"}}])
    with pytest.raises(FlowDefinitionError, match="'Nowhere'"):
        StateFlow([{"name": "A", "on_state": lambda ctx: ctx,
                    "router": {"routes": {"Nowhere": None}, "on_route": lambda ctx: "Nowhere"}}])


def test_on_route_choosing_a_missing_state_fails_the_job_at_once():
    flow = StateFlow([
        {"name": "Pick", "on_state": lambda ctx: ctx,
         "router": {"routes": {"B": None}, "on_route": lambda ctx: "Nowhere"}},
        {"name": "B", "on_state": lambda ctx: ctx},
    ])
    register("route_nowhere", flow)
    try:
        job = scheduler.get_job(scheduler.schedule("route_nowhere"))
    finally:
        unregister("route_nowhere")
    assert_whole(job)
    assert job.status == "failed"
    assert "on_route of state 'Pick' chose 'Nowhere'" in job.error
    assert job.steps.filter(error="").count() == 1 and job.steps.exclude(error="").count() == 1


def test_reply_with_keys_of_mixed_types_names_an_unknown_input(unchanged, blocked_family):
    _, escalation = blocked_family()
    with unchanged(), pytest.raises(EscalationError, match="unknown input"):
        scheduler.reply_to_escalation(escalation.pk, {1: "x", "reason": "a", "zz": 2}, "approved")


def test_plugin_dependency_cycle_is_refused_when_the_flow_is_built():
    plugins = [{"name": "audit", "depends_on": ["auth"]}, {"name": "auth", "depends_on": ["audit"]}]
    with pytest.raises(FlowDefinitionError, match="plugin dependency cycle: audit -> auth -> audit"):
        StateFlow([{"name": "A", "on_state": lambda ctx: ctx}], plugins=plugins)
    with pytest.raises(FlowDefinitionError, match="depends on 'missing'"):
        StateFlow([{"name": "A", "on_state": lambda ctx: ctx}], plugins=[{"name": "x", "depends_on": "missing"}])


def test_escalation_input_of_unknown_type_fails_the_job_at_the_state():
    def ask(ctx):
        ctx.escalate("alice", "Rate this", [{"id": "stars", "type": "slider"}])
        return ctx

    job = run_in_one_state("bad_escalation", "Ask", ask)
    assert_whole(job)
    assert job.status == "failed"
    assert "'Ask'" in job.error and "'stars'" in job.error and "'slider'" in job.error, job.error
    assert job.steps.count() == 1  # no retry
    assert not Escalation.objects.filter(job_id=job.pk).exists()
    assert not Wait.objects.filter(job_id=job.pk).exists()


def test_oversized_reply_and_event_value_change_nothing(unchanged, blocked_family):
    job_id, escalation = blocked_family()
    waiting = scheduler.schedule("child", "wait")
    with override_settings(ENVOY={"MAX_PAYLOAD_BYTES": 200}), unchanged():
        with pytest.raises(PayloadTooLargeError, match=f"reply to escalation {escalation.pk}"):
            scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "note": "x" * 300}, "approved")
        with pytest.raises(PayloadTooLargeError, match="value for wait 'go'"):
            scheduler.resolve_blocking_job(waiting, "go", "x" * 300)


def test_oversized_output_fails_the_job_naming_the_state(emit_flow):
    _emitted["value"] = "x" * 300
    with override_settings(ENVOY={"MAX_PAYLOAD_BYTES": 200}):
        job = scheduler.get_job(scheduler.schedule("emit_value"))
    assert_whole(job)
    assert job.status == "failed"
    assert job.error_type == "PayloadTooLargeError"
    assert "output of job" in job.error and "'Emit'" in job.error


@pytest.mark.parametrize("value, where", [
    ("nul \x00 byte", "NUL"),
    ({"k\x00": 1}, "NUL"),
    (["\ud800"], "surrogate"),
    (b"bytes", "bytes"),
    ((1, 2), "tuple"),
    ({1: "int key"}, "key 1"),
    (decimal.Decimal("1.5"), "Decimal"),
    (uuid.UUID(int=1), "UUID"),
    (dt.date(2026, 1, 1), "date"),
])
def test_values_a_json_column_cannot_hold_are_refused_everywhere(unchanged, blocked_family, value, where):
    job_id, escalation = blocked_family()
    waiting = scheduler.schedule("child", "wait")
    with unchanged():
        with pytest.raises(PayloadError, match=where):
            scheduler.schedule("hello", value)
        with pytest.raises(PayloadError, match=where):
            scheduler.resolve_blocking_job(waiting, "go", value)
        if isinstance(value, str):
            with pytest.raises(PayloadError, match=where):
                scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "note": value}, "approved")


@pytest.mark.parametrize("action", ["spawn", "escalate", "error", "raise"])
def test_a_nul_character_from_a_handler_fails_the_job_instead_of_its_commit(action):
    """On PostgreSQL these were DataErrors at commit: the job stayed running, and the sweep ran it again, forever."""

    def handler(ctx):
        if action == "spawn":
            ctx.spawn("child", "a\x00b")
        elif action == "escalate":
            ctx.escalate("alice", "look \x00 here")
        elif action == "error":
            ctx.error("bad \x00 end")
        else:
            raise ValueError("bad \x00 byte")
        return ctx

    job = run_in_one_state("nul_handler", "Nul", handler)
    assert_whole(job)
    assert job.status == "failed"
    assert "'Nul'" in job.error, job.error
    assert "\x00" not in job.error + job.traceback
    assert "\\x00" in job.error or "NUL" in job.error, job.error
    assert not Job.objects.filter(parent_id=job.pk).exists()
    assert not Escalation.objects.filter(job_id=job.pk).exists()
