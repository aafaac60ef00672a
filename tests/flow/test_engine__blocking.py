"""Waits: spawn, wait_for and escalate block a flow at the end of a phase."""

from __future__ import annotations

from collections import Counter

import pytest

from envoy_django import StateFlow
from envoy_django.exceptions import FlowError, WaitInRunError
from envoy_django.testing.flows import resolve


def waiting_flow(calls, phase="on_state", make_wait=lambda ctx: ctx.wait_for("payment")[0]):
    """One state whose ``phase`` handler waits, then reads the result in the next handler."""

    def wait(ctx):
        calls[phase] += 1
        ctx.set("wait_id", make_wait(ctx))
        return ctx

    def plain(name):
        def handler(ctx):
            calls[name] += 1
            if ctx.get("wait_id") and name != phase:
                result = ctx.result(ctx.get("wait_id"))
                if result is not None and ctx.get("seen") is None:
                    ctx.set("seen", {"by": name, "result": result})
            return ctx

        return handler

    handlers = {name: plain(name) for name in ("on_enter", "on_state", "on_exit")}
    handlers[phase] = wait
    return StateFlow([
        {"name": "Pay", **handlers, "router": {"next": "Ship"}},
        {"name": "Ship", "on_state": plain("Ship")},
    ])


@pytest.mark.parametrize(
    ("phase", "resumes_with"),
    [("on_enter", "on_state"), ("on_state", "on_exit"), ("on_exit", "Ship")],
)
def test_a_wait_blocks_after_its_phase_and_resumes_with_the_next(phase, resumes_with):
    calls = Counter()
    flow = waiting_flow(calls, phase)
    ctx = flow.initial_context()
    while not ctx.waiting():
        ctx = flow.step(ctx)

    assert ctx.waiting() == ["payment"]
    assert ctx.done() is None
    assert ctx.state() == "Pay"
    assert ctx.result("payment") is None
    assert calls[phase] == 1
    assert calls[resumes_with] == 0
    blocked = Counter(calls)

    with pytest.raises(FlowError, match="payment"):
        flow.step(ctx)
    assert calls == blocked  # nothing ran while it waits

    ctx = resolve(ctx, "payment", "resolved", {"paid": 12.5})
    while not ctx.done():
        ctx = flow.step(ctx)

    assert calls[phase] == 1  # the waiting phase did not run again
    assert all(count == 1 for count in calls.values())
    assert ctx.get("seen") == {"by": resumes_with,
                               "result": {"status": "resolved", "value": {"paid": 12.5}, "error": None}}
    assert ctx.done() == "finished"


def test_step_returns_the_context_with_the_phase_after_the_wait_next():
    calls = Counter()
    flow = waiting_flow(calls)

    result = flow.advance(flow.step(flow.initial_context()))  # on_enter, then on_state waits
    ctx = result.context

    assert (result.state, result.phase, result.step) == ("Pay", "state", 1)
    assert [(wait.id, type(wait).__name__) for wait in result.new_waits] == [("payment", "EventWait")]
    assert ctx.phase() == "exit"
    assert ctx.waiting() == ["payment"]


def test_every_wait_must_be_resolved_before_the_flow_continues():
    def wait_many(ctx):
        ids = ctx.wait_for(["a", "b"])
        ids.append(ctx.spawn("child", {"n": 1}))
        ctx.set("ids", ids)
        return ctx

    def collect(ctx):
        ctx.output({wait_id: ctx.result(wait_id)["status"] for wait_id in ctx.get("ids")})
        return ctx

    flow = StateFlow([{"name": "S", "on_state": wait_many, "on_exit": collect}])
    ctx = flow.step(flow.initial_context())
    a, b, child = ctx.get("ids")

    assert ctx.waiting() == [a, b, child]

    ctx = resolve(ctx, a, "resolved", 1)
    assert ctx.waiting() == [b, child]
    with pytest.raises(FlowError, match=child):
        flow.step(ctx)

    ctx = resolve(ctx, child, "failed", None, "child crashed")
    ctx = resolve(ctx, b, "timeout")
    assert ctx.waiting() == []
    assert ctx.result(child) == {"status": "failed", "value": None, "error": "child crashed"}

    ctx = flow.step(ctx)

    assert ctx.output() == {"a": "resolved", "b": "timeout", child: "failed"}
    assert ctx.done() == "finished"


def test_waits_record_type_params_state_and_step():
    def ask(ctx):
        ctx.wait_for("invoice", timeout=30)
        ctx.spawn("child_flow", [1, 2])
        ctx.escalate("bob", "Ship it?", [{"id": "ok", "type": "approve"}], on_reject="continue")
        return ctx

    flow = StateFlow([{"name": "First", "on_state": lambda c: c, "router": {"next": "Ask"}},
                      {"name": "Ask", "on_state": ask}])
    ctx = flow.step(flow.step(flow.initial_context()))

    waits = ctx.waits()

    assert [w["type"] for w in waits] == ["event", "spawn", "escalation"]
    assert all(w["state"] == "Ask" and w["step"] == 2 and w["status"] == "pending" for w in waits)
    assert waits[0]["id"] == "invoice" and waits[0]["timeout"] == 30
    assert waits[1]["params"] == {"flow": "child_flow", "input": [1, 2]}
    assert waits[2]["params"]["user"] == "bob"
    assert waits[2]["params"]["on_reject"] == "continue"
    assert waits[2]["params"]["inputs"][0]["type"] == "approve"


@pytest.mark.parametrize(
    "make_wait",
    [lambda ctx: ctx.wait_for("payment"), lambda ctx: ctx.spawn("child"),
     lambda ctx: ctx.escalate("alice", "Approve?")],
    ids=["wait_for", "spawn", "escalate"],
)
def test_run_refuses_a_wait_and_says_to_schedule_a_job(make_wait):
    flow = waiting_flow(Counter(), make_wait=make_wait)

    with pytest.raises(WaitInRunError) as excinfo:
        flow.run()

    message = str(excinfo.value)
    assert "'Pay'" in message
    assert "schedule" in message
    assert isinstance(excinfo.value, FlowError)


def test_a_flow_that_errors_while_waiting_ends_without_wait_in_run_error():
    def wait_then_fail(ctx):
        ctx.wait_for("payment")
        ctx.error("gave up")
        return ctx

    ctx = StateFlow([{"name": "A", "on_state": wait_then_fail}]).run()

    assert (ctx.done(), ctx.error()) == ("error", "gave up")


def test_a_resolved_wait_id_can_be_waited_for_again_in_a_later_state():
    def wait(ctx):
        ctx.wait_for("tick")
        return ctx

    flow = StateFlow([
        {"name": "A", "on_state": wait, "router": {"next": "B"}},
        {"name": "B", "on_state": wait},
    ])
    ctx = flow.step(flow.initial_context())
    ctx = resolve(ctx, "tick", "resolved", 1)

    ctx = flow.step(ctx)

    assert ctx.state() == "B"
    assert ctx.waiting() == ["tick"]
    assert ctx.result("tick") is None
