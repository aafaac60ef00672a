"""The error contract of the public API, case by case.

Every public function (``scheduler.schedule``, ``get_job``, ``cancel_job``,
``fail_job``, ``retry_job``, ``resolve_blocking_job``, ``reply_to_escalation``,
``list_blocking_jobs`` and ``envoy_django.register``) raises only
``EnvoyError`` subclasses for bad input and creates or changes no row. The
message names the job, state, wait or field at fault, and an echoed value is
cut to about 200 characters, so a huge input never makes a huge message.

Each case states the exact class it expects and a pattern the message must
match; cases with a huge input also check the message stays short. Most rows
come from a list of inputs that once leaked other exceptions; rows marked
"beyond the list" probe the same rules a step further.

Idempotency keys are part of the contract too: same key, flow and input is
the same job; same key with another flow or input is a conflict naming the
job that holds the key; and two callers racing with one key (PostgreSQL)
get one job.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.db import connection

from envoy_django import EnvoyError, StateFlow, register, scheduler
from envoy_django.exceptions import (
    EscalationAlreadyRepliedError,
    EscalationError,
    EscalationNotFoundError,
    FlowDefinitionError,
    IdempotencyConflictError,
    InvalidArgumentError,
    JobNotFoundError,
    JobStateError,
    PayloadError,
    UnknownFlowError,
    WaitNotFoundError,
)
from envoy_django.models import Escalation, Job
from envoy_django.registry import registered, unregister
from tests.support import in_threads

pytestmark = pytest.mark.django_db(transaction=True)

MAX_MESSAGE = 500  # "cut to about 200 characters": with the rest of the sentence, well under this
MB = 1_000_000
BIGINT = 10**5000  # str() and repr() of it raise ValueError (Python's 4,300-digit limit)


def refused(unchanged, error: type[EnvoyError], match: str, call: Callable[[], Any], *,
            huge: bool = False) -> EnvoyError:
    """Run ``call``; it must raise exactly ``error`` (an EnvoyError), matching ``match``, and change no row.

    A non-Envoy exception is not caught here: it fails the test with its own
    traceback, which shows the line of the package it came from.
    """
    assert issubclass(error, EnvoyError), error
    with unchanged():
        with pytest.raises(EnvoyError) as info:
            call()
    exc = info.value
    message = str(exc)
    shown = message if len(message) <= 600 else f"{message[:600]}... ({len(message)} characters)"
    assert type(exc) is error, f"expected {error.__name__}, got {type(exc).__name__}: {shown}"
    assert re.search(match, message), f"{match!r} not in message: {shown}"
    if huge:
        size = len(message)
        assert size < MAX_MESSAGE, f"message of {size} characters for a huge input: {shown}"
    return exc


def _nested_list(levels: int) -> list:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def _nested_dict(levels: int) -> dict:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"a": value}
    return value


def _cyclic_list() -> list:
    value: list = []
    value.append(value)
    return value


def _cyclic_dict() -> dict:
    value: dict = {}
    value["self"] = value
    return value


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


@pytest.fixture
def waiting_job() -> str:
    """A "family" job blocked on its outside-event wait "payment"."""
    job_id = scheduler.schedule("family", {"children": [1]})
    job = scheduler.get_job(job_id)
    assert job.status == "blocking" and job.waits.filter(wait_id="payment", status="pending").exists()
    return job_id


@pytest.fixture
def escalation(waiting_job) -> Escalation:
    """The pending escalation of a "family" job: inputs reason (select a/b), note (comment), ok (approve)."""
    scheduler.resolve_blocking_job(waiting_job, "payment", 1)
    return Escalation.objects.get(job_id=waiting_job, status="pending")


@pytest.fixture
def done_job() -> str:
    job_id = scheduler.schedule("hello")
    assert scheduler.get_job(job_id).status == "done"
    return job_id


# --- values that cannot be stored: schedule's input and resolve_blocking_job's value --------

BAD_PAYLOADS = [
    # id, value, what the message must name, huge
    pytest.param(_nested_list(300), r"nested deeper than 256 levels", False, id="list-300-deep"),
    pytest.param(_nested_dict(300), r"nested deeper than 256 levels", False, id="dict-300-deep"),
    pytest.param(_cyclic_list(), r"or a cycle", False, id="list-contains-itself"),
    pytest.param(_cyclic_dict(), r"or a cycle", False, id="dict-contains-itself"),
    pytest.param({"n": BIGINT}, r"n \(an integer of more than 4300 digits\)", False, id="int-5001-digits"),
    pytest.param([1, -BIGINT], r"\[1\] \(an integer of more than 4300 digits\)", False, id="negative-int-5001-digits"),
    pytest.param({"x": math.nan}, r"x \(nan is not finite\)", False, id="nan"),
    pytest.param({"x": [math.inf]}, r"x\[0\] \(inf is not finite\)", False, id="inf"),
    pytest.param(-math.inf, r"value \(-inf is not finite\)", False, id="minus-inf-top-level"),
    pytest.param({"t": (1, 2)}, r"t \(tuple is not JSON\)", False, id="tuple"),
    pytest.param({"s": {1, 2}}, r"s \(set is not JSON\)", False, id="set"),
    pytest.param(frozenset(), r"frozenset is not JSON", False, id="frozenset"),
    pytest.param({1: "a"}, r"key 1 is not a string", False, id="int-key"),
    pytest.param({"d": {None: 1}}, r"d \(key None is not a string\)", False, id="none-key-nested"),
    pytest.param({"s": "a\x00b"}, r"s \(contains a NUL character", False, id="nul-in-value"),
    pytest.param({"a\x00": 1}, r"NUL character", False, id="nul-in-key"),
    pytest.param(["ok", "\ud800"], r"\[1\] \(contains the surrogate", False, id="surrogate-in-value"),
    pytest.param({"\udfff": 1}, r"surrogate", False, id="surrogate-in-key"),
    pytest.param("x" * MB + "\x00", r"NUL character", True, id="1MB-string-with-nul"),
    pytest.param({"k" * MB + "\x00": 1}, r"NUL character", True, id="1MB-key-with-nul"),
    # beyond the list: a huge key on the path to a bad value is echoed as part of the path
    pytest.param({"k" * MB: math.nan}, r"nan is not finite", True, id="1MB-key-to-nan"),
]


@pytest.mark.parametrize("value, where, huge", BAD_PAYLOADS)
def test_schedule_refuses_input_that_cannot_be_stored(unchanged, value, where, huge):
    refused(unchanged, PayloadError, rf"input of flow 'hello' cannot be stored: .*{where}",
            lambda: scheduler.schedule("hello", value), huge=huge)


@pytest.mark.parametrize("value, where, huge", BAD_PAYLOADS)
def test_resolve_refuses_a_value_that_cannot_be_stored(unchanged, waiting_job, value, where, huge):
    refused(unchanged, PayloadError, rf"value for wait 'payment' of job {waiting_job} cannot be stored: .*{where}",
            lambda: scheduler.resolve_blocking_job(waiting_job, "payment", value), huge=huge)


# --- schedule: flow name, run_at, idempotency_key --------------------------------------------


@pytest.mark.parametrize("name, match, huge", [
    pytest.param(["hello"], r"flow name is a string, got \['hello'\]", False, id="list"),
    pytest.param({"hello": 1}, r"flow name is a string", False, id="dict"),
    pytest.param(None, r"flow name is a string, got None", False, id="none"),
    pytest.param(5, r"flow name is a string, got 5", False, id="int"),
    pytest.param(b"hello", r"flow name is a string", False, id="bytes"),
    pytest.param(BIGINT, r"flow name is a string, got <int>", False, id="int-5001-digits"),
    pytest.param("nope", r"no flow is registered as 'nope'", False, id="unknown"),
    pytest.param("hel\x00lo", r"no flow is registered as 'hel\\x00lo'", False, id="nul"),
    pytest.param("n" * MB, r"no flow is registered as 'nnn", True, id="1MB-name"),
])
def test_schedule_refuses_a_bad_flow_name(unchanged, name, match, huge):
    refused(unchanged, UnknownFlowError, match, lambda: scheduler.schedule(name, {}), huge=huge)


@pytest.mark.parametrize("run_at, huge", [
    pytest.param(dt.datetime(2030, 1, 1), False, id="naive-datetime"),
    pytest.param("2030-01-01T00:00:00+00:00", False, id="iso-string"),
    pytest.param(dt.date(2030, 1, 1), False, id="date"),
    pytest.param(1893456000, False, id="int"),
    pytest.param(1.5, False, id="float"),
    pytest.param(dt.timedelta(seconds=5), False, id="timedelta"),
    pytest.param("2030" * MB, True, id="1MB-string"),
    # beyond the list: aware, but outside what a UTC timestamp column can hold
    pytest.param(dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))), False, id="before-year-1-in-utc"),
    pytest.param(dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5))), False,
                 id="after-year-9999-in-utc"),
])
def test_schedule_refuses_a_bad_run_at(unchanged, run_at, huge):
    refused(unchanged, InvalidArgumentError, r"run_at for flow 'hello' must be a timezone-aware datetime",
            lambda: scheduler.schedule("hello", {}, run_at=run_at), huge=huge)


@pytest.mark.parametrize("key, huge", [
    pytest.param("k" * 256, False, id="256-chars"),
    pytest.param("k" * MB, True, id="1MB"),
    pytest.param("", False, id="empty"),
    pytest.param("a\x00b", False, id="nul"),
    pytest.param("a\ud800", False, id="surrogate"),
    pytest.param(5, False, id="int"),
    pytest.param(["k"], False, id="list"),
    pytest.param(b"k", False, id="bytes"),
    pytest.param(uuid.UUID(int=1), False, id="uuid-object"),
])
def test_schedule_refuses_a_bad_idempotency_key(unchanged, key, huge):
    refused(unchanged, InvalidArgumentError, r"idempotency_key for flow 'hello' must be a non-empty string "
            r"of at most 255 characters", lambda: scheduler.schedule("hello", {}, idempotency_key=key), huge=huge)


def test_an_idempotency_key_of_255_characters_is_accepted():
    """The boundary of the key cases above: 255 characters fit the column."""
    job_id = scheduler.schedule("hello", idempotency_key="k" * 255)
    assert Job.objects.get(idempotency_key="k" * 255).pk == uuid.UUID(job_id)


# --- job ids: get_job, cancel_job, fail_job, retry_job, resolve_blocking_job ----------------

JOB_CALLS = {
    "get_job": scheduler.get_job,
    "cancel_job": scheduler.cancel_job,
    "fail_job": lambda job_id: scheduler.fail_job(job_id, "operator says no"),
    "retry_job": scheduler.retry_job,
    "resolve_blocking_job": lambda job_id: scheduler.resolve_blocking_job(job_id, "payment", 1),
}

BAD_JOB_IDS = [
    pytest.param("garbage", r"no job 'garbage' \(not a valid id\)", False, id="garbage"),
    pytest.param(None, r"no job None \(not a valid id\)", False, id="none"),
    pytest.param(5, r"no job 5 \(not a valid id\)", False, id="int"),
    pytest.param(["x"], r"no job \['x'\]", False, id="list"),
    pytest.param(BIGINT, r"no job <int> \(not a valid id\)", False, id="int-5001-digits"),
    pytest.param("x" * 10_000, r"no job 'xxx.*not a valid id", True, id="10000-chars"),
    pytest.param(str(uuid.UUID(int=7)), r"no job 00000000-0000-0000-0000-000000000007", False, id="unknown-uuid"),
    # beyond the list: uuid.UUID() drops every "-", so 10,000 characters can still be an id
    pytest.param("-" * 9968 + "0" * 31 + "7", r"no job", True, id="10000-chars-that-parse-as-a-uuid"),
]


@pytest.mark.parametrize("call", list(JOB_CALLS), ids=list(JOB_CALLS))
@pytest.mark.parametrize("job_id, match, huge", BAD_JOB_IDS)
def test_job_calls_refuse_a_bad_or_unknown_job_id(unchanged, waiting_job, call, job_id, match, huge):
    # waiting_job: there is a job (and a wait "payment") that a wrong id must not reach
    refused(unchanged, JobNotFoundError, match, lambda: JOB_CALLS[call](job_id), huge=huge)


@pytest.mark.parametrize("call, job, error, match", [
    pytest.param("cancel_job", "done_job", JobStateError, r"job {id} is already done; nothing to cancel",
                 id="cancel-done"),
    pytest.param("fail_job", "done_job", JobStateError, r"job {id} is already done; nothing to fail", id="fail-done"),
    pytest.param("cancel_job", "cancelled_job", JobStateError, r"job {id} is already cancelled; nothing to cancel",
                 id="cancel-cancelled"),
    pytest.param("fail_job", "failed_job", JobStateError, r"job {id} is already failed; nothing to fail",
                 id="fail-failed"),
    pytest.param("retry_job", "done_job", JobStateError, r"job {id} is done; only failed jobs can be retried",
                 id="retry-done"),
    pytest.param("retry_job", "waiting_job", JobStateError, r"job {id} is blocking; only failed jobs can be retried",
                 id="retry-blocking"),
    pytest.param("retry_job", "cancelled_job", JobStateError, r"job {id} is cancelled; only failed jobs can be retried",
                 id="retry-cancelled"),
    pytest.param("resolve_blocking_job", "done_job", WaitNotFoundError, r"job {id} has no wait 'payment'",
                 id="resolve-done"),
    pytest.param("resolve_blocking_job", "cancelled_job", JobStateError,
                 r"wait 'payment' of job {id} is already cancelled",
                 id="resolve-cancelled"),
])
def test_job_calls_refuse_a_job_in_the_wrong_state(request, unchanged, call, job, error, match):
    if job == "cancelled_job":
        job_id = request.getfixturevalue("waiting_job")
        scheduler.cancel_job(job_id)
    elif job == "failed_job":
        job_id = request.getfixturevalue("waiting_job")
        scheduler.fail_job(job_id, "by hand")
    else:
        job_id = request.getfixturevalue(job)
    refused(unchanged, error, match.format(id=job_id), lambda: JOB_CALLS[call](job_id))


@pytest.mark.parametrize("reason, match", [
    pytest.param(BIGINT, r"reason to fail job {id} must be text, got int", id="int-5001-digits"),
    pytest.param(_Unprintable(), r"reason to fail job {id} must be text, got _Unprintable", id="str-raises"),
])
def test_fail_job_refuses_a_reason_that_is_not_text(unchanged, waiting_job, reason, match):
    refused(unchanged, InvalidArgumentError, match.format(id=waiting_job),
            lambda: scheduler.fail_job(waiting_job, reason))


# --- resolve_blocking_job: wait ids -----------------------------------------------------------


@pytest.mark.parametrize("wait_id, match, huge", [
    pytest.param("w" * 101, r"has no wait 'www.*\(wait ids are strings of at most 100 characters\)", False,
                 id="101-chars"),
    pytest.param("w" * MB, r"has no wait 'www.*\(wait ids are strings of at most 100 characters\)", True, id="1MB"),
    pytest.param("", r"has no wait ''", False, id="empty"),
    pytest.param(5, r"has no wait 5 ", False, id="int"),
    pytest.param(None, r"has no wait None ", False, id="none"),
    pytest.param(["payment"], r"has no wait \['payment'\]", False, id="list"),
    pytest.param(BIGINT, r"has no wait <int>", False, id="int-5001-digits"),
    pytest.param("nope", r"has no wait 'nope'", False, id="unknown"),
    # beyond the list: text PostgreSQL cannot store, as a wait id (a string within the length)
    pytest.param("pay\x00ment", r"has no wait 'pay\\x00ment'", False, id="nul"),
    pytest.param("pay\ud800", r"has no wait 'pay\\ud800'", False, id="surrogate"),
])
def test_resolve_refuses_a_bad_wait_id(unchanged, waiting_job, wait_id, match, huge):
    refused(unchanged, WaitNotFoundError, rf"job {waiting_job} {match}",
            lambda: scheduler.resolve_blocking_job(waiting_job, wait_id, 1), huge=huge)


# --- reply_to_escalation --------------------------------------------------------------------

REPLY_CASES = [
    # values, status, user (a factory), error, match, huge
    pytest.param({"reason": "a"}, "maybe", None, EscalationError,
                 r"status must be 'approved' or 'rejected', got 'maybe'", False, id="status-unknown"),
    pytest.param({"reason": "a"}, "a" * MB, None, EscalationError,
                 r"status must be 'approved' or 'rejected', got 'aaa", True, id="status-1MB"),
    pytest.param({"reason": "a"}, None, None, EscalationError,
                 r"status must be 'approved' or 'rejected', got None", False, id="status-none"),
    pytest.param({"reason": "a"}, ["approved"], None, EscalationError,
                 r"status must be 'approved' or 'rejected', got \['approved'\]", False, id="status-list"),
    pytest.param({"reason": "a"}, "APPROVED", None, EscalationError,
                 r"status must be 'approved' or 'rejected'", False, id="status-upper-case"),
    pytest.param("a", "approved", None, EscalationError, r"values must be a dict of input id to value, got str",
                 False, id="values-str"),
    pytest.param(["reason", "a"], "approved", None, EscalationError, r"values must be a dict.*got list",
                 False, id="values-list"),
    pytest.param(5, "approved", None, EscalationError, r"values must be a dict.*got int", False, id="values-int"),
    pytest.param({"nope": 1, "reason": "a"}, "approved", None, EscalationError,
                 r"unknown input 'nope' \(inputs: reason, note, ok\)", False, id="unknown-input"),
    pytest.param({"n" * MB: 1}, "approved", None, EscalationError, r"unknown input 'nnn", True, id="unknown-input-1MB"),
    pytest.param({7: 1, "reason": "a"}, "approved", None, EscalationError, r"unknown input 7 ", False,
                 id="unknown-input-int"),
    # beyond the list: an unknown input id whose str() raises
    pytest.param({BIGINT: 1, "reason": "a"}, "approved", None, EscalationError, r"unknown input <int>", False,
                 id="unknown-input-int-5001-digits"),
    pytest.param({"reason": "z"}, "approved", None, EscalationError,
                 r"'z' is not an option of input 'reason' \(options: a, b\)", False, id="select-not-an-option"),
    pytest.param({"reason": "a" * MB}, "approved", None, EscalationError,
                 r"'aaa.* is not an option of input 'reason'", True, id="select-1MB"),
    pytest.param({"reason": ["a"]}, "approved", None, EscalationError,
                 r"\['a'\] is not an option of input 'reason'", False, id="select-list"),
    pytest.param({"reason": "A"}, "approved", None, EscalationError,
                 r"'A' is not an option of input 'reason'", False, id="select-label-not-key"),
    pytest.param({"note": "why"}, "approved", None, EscalationError, r"input 'reason' \(Reason\) is required",
                 False, id="select-missing"),
    pytest.param({"reason": "a", "ok": "yes"}, "approved", None, EscalationError,
                 r"input 'ok' takes true or false, got 'yes'", False, id="approve-str"),
    pytest.param({"reason": "a", "ok": 1}, "approved", None, EscalationError,
                 r"input 'ok' takes true or false, got 1", False, id="approve-int"),
    pytest.param({"reason": "a", "ok": BIGINT}, "approved", None, EscalationError,
                 r"input 'ok' takes true or false, got <int>", False, id="approve-int-5001-digits"),
    pytest.param({"reason": "a", "note": BIGINT}, "approved", None, EscalationError,
                 r"input 'note' takes text, got int", False, id="comment-int-5001-digits"),
    pytest.param({"reason": "a", "note": ["text"]}, "approved", None, EscalationError,
                 r"input 'note' takes text, got list", False, id="comment-list"),
    pytest.param({"reason": "a", "note": "a\x00b"}, "approved", None, PayloadError,
                 r"cannot be stored: note \(contains a NUL character", False, id="comment-nul"),
    pytest.param({"reason": "a", "note": "\ud800"}, "approved", None, PayloadError,
                 r"cannot be stored: note \(contains the surrogate", False, id="comment-surrogate"),
    pytest.param({"reason": "a"}, "approved", lambda: _anonymous(), EscalationError,
                 r"user must be a saved User, a username or None, got .*AnonymousUser", False,
                 id="user-anonymous"),
    pytest.param({"reason": "a"}, "approved", lambda: _user_model()(username="bob"), EscalationError,
                 r"user must be a saved User, a username or None", False, id="user-unsaved"),
    pytest.param({"reason": "a"}, "approved", lambda: 5, EscalationError,
                 r"user must be a saved User, a username or None, got 5", False, id="user-int"),
    pytest.param({"reason": "a"}, "approved", lambda: "u" * 151, InvalidArgumentError,
                 r"user must be a string of at most 150 characters", False, id="username-151-chars"),
    pytest.param({"reason": "a"}, "approved", lambda: "u" * MB, InvalidArgumentError,
                 r"user must be a string of at most 150 characters", True, id="username-1MB"),
    pytest.param({"reason": "a"}, "approved", lambda: "al\x00ice", InvalidArgumentError,
                 r"user must be a string .*without NUL characters", False, id="username-nul"),
]


def _user_model():
    from django.contrib.auth import get_user_model

    return get_user_model()


def _anonymous():
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


@pytest.mark.parametrize("values, status, user, error, match, huge", REPLY_CASES)
def test_reply_refuses_bad_input(unchanged, escalation, values, status, user, error, match, huge):
    who = user() if user else None
    refused(unchanged, error, match, lambda: scheduler.reply_to_escalation(escalation.pk, values, status, user=who),
            huge=huge)
    assert Escalation.objects.get(pk=escalation.pk).status == "pending"


def test_reply_refuses_a_saved_user_whose_username_is_too_long(unchanged, escalation):
    User = _user_model()
    if connection.vendor == "sqlite":
        user = User.objects.create(username="x" * 151)  # SQLite does not enforce varchar(150)
    else:
        # PostgreSQL refuses such a row (varchar(150)), so it cannot be saved there; an unsaved
        # instance with a primary key is what a user loaded from a wider custom column would look like.
        user = User(pk=987654, username="x" * 151)
    refused(unchanged, InvalidArgumentError,
            rf"reply to escalation {escalation.pk}: username must be a string of at most 150 characters",
            lambda: scheduler.reply_to_escalation(escalation.pk, {"reason": "a"}, "approved", user=user))


@pytest.mark.parametrize("escalation_id, match, huge", [
    pytest.param("garbage", r"no escalation 'garbage' \(not a valid id\)", False, id="garbage"),
    pytest.param(None, r"no escalation None \(not a valid id\)", False, id="none"),
    pytest.param(5, r"no escalation 5 \(not a valid id\)", False, id="int"),
    pytest.param("e" * 10_000, r"no escalation 'eee.*not a valid id", True, id="10000-chars"),
    pytest.param(str(uuid.UUID(int=9)), r"no escalation 00000000-0000-0000-0000-000000000009", False,
                 id="unknown-uuid"),
    # beyond the list: 10,000 characters that uuid.UUID() still reads as an id
    pytest.param("-" * 9968 + "0" * 31 + "9", r"no escalation", True, id="10000-chars-that-parse-as-a-uuid"),
])
def test_reply_refuses_a_bad_or_unknown_escalation_id(unchanged, escalation, escalation_id, match, huge):
    refused(unchanged, EscalationNotFoundError, match,
            lambda: scheduler.reply_to_escalation(escalation_id, {"reason": "a"}, "approved"), huge=huge)


@pytest.mark.parametrize("second_status, second_user", [("approved", "alice"), ("rejected", "bob"), ("approved", None)])
def test_replying_twice_is_refused(unchanged, escalation, second_status, second_user):
    scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "note": "fine", "ok": True}, "approved", user="alice")
    assert scheduler.get_job(escalation.job_id).status == "done"
    refused(unchanged, EscalationAlreadyRepliedError, rf"escalation {escalation.pk} was already approved by alice",
            lambda: scheduler.reply_to_escalation(escalation.pk, {"reason": "b"}, second_status, user=second_user))


# --- list_blocking_jobs ---------------------------------------------------------------------


@pytest.mark.parametrize("limit", [-1, "3", True, False, 1.5, [3], math.inf],
                         ids=["minus-1", "str", "true", "false", "float", "list", "inf"])
def test_list_blocking_jobs_refuses_a_bad_limit(unchanged, waiting_job, limit):
    refused(unchanged, InvalidArgumentError, r"list_blocking_jobs: limit must be None or an integer >= 0",
            lambda: scheduler.list_blocking_jobs(limit=limit))
    assert [job["job_id"] for job in scheduler.list_blocking_jobs(limit=5)] == [waiting_job]  # the control


# --- register -------------------------------------------------------------------------------


def _flow() -> StateFlow:
    return StateFlow([{"name": "Only", "on_state": lambda ctx: ctx}])


@pytest.mark.parametrize("name, flow, match, huge", [
    pytest.param("f" * 201, _flow, r"flow name must be a non-empty string of at most 200 characters", False,
                 id="name-201-chars"),
    pytest.param("f" * MB, _flow, r"flow name must be a non-empty string of at most 200 characters", True,
                 id="name-1MB"),
    pytest.param("", _flow, r"flow name must be a non-empty string", False, id="name-empty"),
    pytest.param(5, _flow, r"flow name must be a non-empty string.*got 5", False, id="name-int"),
    pytest.param(None, _flow, r"flow name must be a non-empty string.*got None", False, id="name-none"),
    pytest.param(["f"], _flow, r"flow name must be a non-empty string.*got \['f'\]", False, id="name-list"),
    pytest.param(BIGINT, _flow, r"flow name must be a non-empty string.*got <int>", False, id="name-int-5001-digits"),
    # beyond the list: names a job row's flow column cannot hold on PostgreSQL
    pytest.param("contract\x00flow", _flow, r"flow name", False, id="name-nul"),
    pytest.param("contract\ud800", _flow, r"flow name", False, id="name-surrogate"),
    pytest.param("contract_flow", lambda: None, r"register\('contract_flow', \.\.\.\) needs a StateFlow, got NoneType",
                 False, id="flow-none"),
    pytest.param("contract_flow", lambda: {"states": []}, r"needs a StateFlow, got dict", False, id="flow-dict"),
    pytest.param("contract_flow", lambda: StateFlow, r"needs a StateFlow, got type", False, id="flow-class"),
    pytest.param("contract_flow", lambda: _flow, r"needs a StateFlow, got function", False, id="flow-function"),
    pytest.param("hello", _flow, r"a different flow is already registered as 'hello' version 1; pass replace=True",
                 False, id="name-taken"),
])
def test_register_refuses_bad_input(unchanged, name, flow, match, huge):
    before = registered()
    try:
        refused(unchanged, FlowDefinitionError, match, lambda: register(name, flow()), huge=huge)
    finally:
        after = registered()
        for added in set(after) - set(before):  # leave the registry as the other tests expect it
            unregister(added)
        for name_, kept in before.items():
            if after.get(name_) is not kept:
                register(name_, kept, replace=True)
    assert after == before


# --- idempotency keys -----------------------------------------------------------------------


@pytest.mark.parametrize("input", [
    pytest.param(None, id="none"),
    pytest.param("world", id="str"),
    pytest.param({"b": [1, 2.5, None, True, "x"], "a": {"c": "d"}}, id="dict"),
    pytest.param(["héllo ✓", "日本"], id="unicode"),
    pytest.param(10**20, id="int-beyond-int64"),
    pytest.param(0.1, id="float"),
    pytest.param({"amount": 5.191662930700247e16}, id="float-written-in-exponent-form"),
    pytest.param({"amount": 1e300}, id="float-1e300"),
])
def test_same_key_flow_and_input_return_the_existing_job(unchanged, input):
    key = f"order-{uuid.uuid4()}"
    job_id = scheduler.schedule("hello", input, idempotency_key=key)
    with unchanged():
        again = scheduler.schedule("hello", input, idempotency_key=key)
    assert again == job_id
    assert Job.objects.filter(idempotency_key=key).count() == 1


@pytest.mark.parametrize("flow, input, match", [
    pytest.param("child", {"n": 1}, r"belongs to job {id} of flow 'hello', not 'child'", id="other-flow"),
    pytest.param("hello", {"n": 2}, r"belongs to job {id} of flow 'hello', which was scheduled with other input",
                 id="other-input"),
    pytest.param("hello", None, r"belongs to job {id} of flow 'hello', which was scheduled with other input",
                 id="no-input"),
    pytest.param("hello", {"n": 1, "m": 0},
                 r"belongs to job {id} of flow 'hello', which was scheduled with other input",
                 id="more-input"),
    pytest.param("hello", {"n": "1"}, r"belongs to job {id} of flow 'hello', which was scheduled with other input",
                 id="input-of-another-type"),
])
def test_same_key_with_other_flow_or_input_is_a_conflict(unchanged, flow, input, match):
    key = f"order-{uuid.uuid4()}"
    job_id = scheduler.schedule("hello", {"n": 1}, idempotency_key=key)
    exc = refused(unchanged, IdempotencyConflictError, rf"idempotency_key '{key}' " + match.format(id=job_id),
                  lambda: scheduler.schedule(flow, input, idempotency_key=key))
    assert exc.job_id == job_id
    assert Job.objects.filter(idempotency_key=key).count() == 1


@pytest.mark.services
def test_two_callers_racing_with_one_key_get_one_job():
    """PostgreSQL: both threads pass the "no job has this key" check, one insert wins, both get its id."""
    assert connection.vendor == "postgresql"
    for round_ in range(20):
        key = f"race-{round_}-{uuid.uuid4()}"
        schedule = partial(scheduler.schedule, "hello", {"round": round_}, idempotency_key=key)
        results = in_threads(schedule, schedule, timeout=60)
        assert results[0] == results[1], f"round {round_}: {results}"
        assert list(Job.objects.filter(idempotency_key=key).values_list("pk", flat=True)) == [uuid.UUID(results[0])]
