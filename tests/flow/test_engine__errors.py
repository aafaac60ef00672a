"""What a flow raises when a handler fails or misbehaves, and what it leaves alone."""

from __future__ import annotations

import datetime

import pytest

from envoy_django import StateFlow
from envoy_django.exceptions import FlowError, HandlerError, PayloadError
from envoy_django.flow import Context


def noop(ctx):
    return ctx


def boom(ctx):
    raise ValueError("bad thing")


def set_out(value):
    def handler(ctx):
        ctx.output(value)
        return ctx

    return handler


@pytest.mark.parametrize(
    ("state_spec", "handler"),
    [
        ({"on_state": boom}, "on_state"),
        ({"on_state": noop, "on_enter": boom}, "on_enter"),
        ({"on_state": noop, "on_exit": boom}, "on_exit"),
        ({"on_state": noop, "router": {"routes": {"Next": {}}, "on_route": boom}}, "on_route"),
        ({"on_state": noop, "router": {"next": "Next", "map": lambda o: 1 / 0}}, "map to 'Next'"),
    ],
    ids=["on_state", "on_enter", "on_exit", "on_route", "map"],
)
def test_a_raising_handler_gives_handler_error_with_state_handler_and_original(state_spec, handler):
    flow = StateFlow([{"name": "Work", **state_spec}, {"name": "Next", "on_state": noop}])

    with pytest.raises(HandlerError) as excinfo:
        flow.run()

    err = excinfo.value
    assert err.state == "Work"
    assert err.handler == handler
    assert isinstance(err.original, (ValueError, ZeroDivisionError))
    assert err.__cause__ is err.original
    assert "'Work'" in str(err)
    assert handler in str(err)
    assert not isinstance(err, FlowError)  # a passing failure: the scheduler retries it


def test_handler_error_message_carries_the_original_type_and_text():
    with pytest.raises(HandlerError, match="ValueError: bad thing"):
        StateFlow([{"name": "A", "on_state": boom}]).run()


def test_step_that_raises_leaves_the_callers_context_unchanged():
    def first(ctx):
        ctx.output("from A")
        ctx.set("a", {"list": [1, 2]})
        return ctx

    def half_then_boom(ctx):
        ctx.output("half done")
        ctx.set("a.list", "clobbered")
        ctx.set("b", 1)
        raise ValueError("late failure")

    flow = StateFlow([
        {"name": "A", "on_state": first},
        {"name": "B", "on_enter": lambda ctx: (ctx.set("entered", True), ctx)[1], "on_state": half_then_boom},
    ])
    ctx = flow.step(flow.initial_context("in"))  # A done, now entering B
    ctx = flow.step(ctx)  # B's on_enter
    before = ctx.serialize()

    with pytest.raises(HandlerError):
        flow.step(ctx)

    assert ctx.serialize() == before
    assert ctx.output() == "from A"
    assert ctx.get("a") == {"list": [1, 2]}
    # The same context can be stepped again (a retry), with the same result.
    with pytest.raises(HandlerError):
        flow.step(ctx)
    assert ctx.serialize() == before


def test_handlers_receive_a_copy_not_the_callers_context():
    received = []

    def grab(ctx):
        received.append(ctx)
        ctx.output("changed")
        return ctx

    flow = StateFlow([{"name": "A", "on_state": grab}])
    ctx = flow.initial_context("in")

    after = flow.step(ctx)

    assert received[0] is not ctx
    assert ctx.output() is None
    assert ctx.phase() == "enter"
    assert after.output() == "changed"


@pytest.mark.parametrize("returned", [None, "ctx", {"output": 1}, 0])
@pytest.mark.parametrize("handler", ["on_state", "on_enter", "on_exit"])
def test_a_handler_must_return_the_context(handler, returned):
    def bad(ctx):
        ctx.output("x")
        return returned

    spec = {"name": "Bad", "on_state": noop, handler: bad}
    flow = StateFlow([spec])

    with pytest.raises(FlowError) as excinfo:
        flow.run()

    message = str(excinfo.value)
    assert "'Bad'" in message
    assert handler in message
    assert type(returned).__name__ in message
    assert "return ctx" in message
    assert not isinstance(excinfo.value, HandlerError)


def test_returning_a_context_of_another_state_is_refused():
    flow = StateFlow([{"name": "A", "on_state": lambda ctx: Context("B")}, {"name": "B", "on_state": noop}])

    with pytest.raises(FlowError, match="'A'"):
        flow.run()


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (datetime.datetime(2024, 1, 1), "datetime"),
        ({1, 2}, "set"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ((1, 2), "tuple"),
        ({1: "int key"}, "key 1"),
        (b"bytes", "bytes"),
        (object(), "object"),
    ],
    ids=["datetime", "set", "nan", "inf", "tuple", "int-key", "bytes", "object"],
)
def test_non_json_data_raises_payload_error_naming_state_and_key(value, detail):
    def store(ctx):
        ctx.set("report.when", value)
        return ctx

    flow = StateFlow([{"name": "Store", "on_state": store}])

    with pytest.raises(PayloadError) as excinfo:
        flow.run()

    message = str(excinfo.value)
    assert "'Store'" in message
    assert "report.when" in message
    assert detail in message
    assert isinstance(excinfo.value, FlowError)


def test_non_json_output_raises_payload_error_naming_state_and_output():
    with pytest.raises(PayloadError, match=r"'Out'.*output.*date is not JSON"):
        StateFlow([{"name": "Out", "on_state": set_out(datetime.date(2024, 1, 1))}]).run()


def test_non_json_nested_in_a_list_names_its_position():
    with pytest.raises(PayloadError, match=r"output\[1\]\.when"):
        StateFlow([{"name": "Out", "on_state": set_out([1, {"when": datetime.date(2024, 1, 1)}])}]).run()


def test_non_json_set_in_on_enter_names_the_state():
    def enter(ctx):
        ctx.set("bad", {3})
        return ctx

    with pytest.raises(PayloadError, match=r"'E'.*bad"):
        StateFlow([{"name": "E", "on_enter": enter, "on_state": noop}]).run()


def test_non_json_set_in_on_route_names_the_routing_state():
    def on_route(ctx):
        ctx.set("chosen_at", datetime.datetime(2024, 1, 1))
        return "B"

    flow = StateFlow([
        {"name": "A", "on_state": noop, "router": {"routes": {"B": {}}, "on_route": on_route}},
        {"name": "B", "on_state": noop},
    ])

    with pytest.raises(PayloadError) as excinfo:
        flow.run()

    assert "'A'" in str(excinfo.value)
    assert "chosen_at" in str(excinfo.value)


def test_non_json_spawn_input_is_refused():
    def spawn(ctx):
        ctx.spawn("child", {"at": datetime.date(2024, 1, 1)})
        return ctx

    flow = StateFlow([{"name": "S", "on_state": spawn}])

    with pytest.raises(PayloadError, match=r"'S'.*at"):
        flow.step(flow.initial_context())


def test_non_json_run_input_is_refused_before_anything_runs():
    calls = []

    def handler(ctx):
        calls.append(1)
        return ctx

    with pytest.raises(PayloadError, match="input"):
        StateFlow([{"name": "A", "on_state": handler}]).run({"when": datetime.date(2024, 1, 1)})
    assert calls == []


def test_payload_error_leaves_the_callers_context_unchanged():
    flow = StateFlow([{"name": "A", "on_state": set_out({1})}])
    ctx = flow.initial_context("in")
    before = ctx.serialize()

    with pytest.raises(PayloadError):
        flow.step(ctx)

    assert ctx.serialize() == before


def test_ctx_error_ends_the_flow_and_run_returns_the_context():
    later = []

    def fail(ctx):
        ctx.output("partial")
        ctx.error("the invoice is missing")
        return ctx

    def after(ctx):
        later.append(ctx.state())
        return ctx

    flow = StateFlow([
        {"name": "A", "on_state": fail, "on_exit": after},
        {"name": "B", "on_state": after},
    ])

    ctx = flow.run()

    assert ctx.done() == "error"
    assert ctx.error() == "the invoice is missing"
    assert ctx.output() == "partial"
    assert ctx.state() == "A"
    assert later == []  # neither A's on_exit nor B ran


def test_ctx_error_in_on_route_ends_the_flow():
    def on_route(ctx):
        ctx.error("cannot decide")
        return "B"

    flow = StateFlow([
        {"name": "A", "on_state": noop, "router": {"routes": {"B": {}}, "on_route": on_route}},
        {"name": "B", "on_state": noop},
    ])

    ctx = flow.run()

    assert (ctx.done(), ctx.error(), ctx.state()) == ("error", "cannot decide", "A")


def test_stepping_an_ended_flow_raises():
    flow = StateFlow([{"name": "A", "on_state": noop}])
    ctx = flow.run()

    with pytest.raises(FlowError, match="already ended"):
        flow.step(ctx)


def test_stepping_a_context_in_an_unknown_state_raises():
    flow = StateFlow([{"name": "A", "on_state": noop}])

    with pytest.raises(FlowError, match="'Elsewhere'"):
        flow.step(Context("Elsewhere"))


def test_ctx_misuse_in_a_handler_is_a_flow_error_naming_state_and_handler():
    def bad_wait(ctx):
        ctx.wait_for([42])
        return ctx

    with pytest.raises(FlowError) as excinfo:
        StateFlow([{"name": "W", "on_state": bad_wait}]).run()

    assert "'W'" in str(excinfo.value)
    assert not isinstance(excinfo.value, HandlerError)


def test_unknown_escalation_input_type_in_a_handler_is_a_flow_error():
    def escalate(ctx):
        ctx.escalate("alice", "ok?", [{"id": "x", "type": "slider"}])
        return ctx

    with pytest.raises(FlowError) as excinfo:
        StateFlow([{"name": "Ask", "on_state": escalate}]).run()

    message = str(excinfo.value)
    assert "on_state" in message
    assert "'Ask'" in message
    assert "slider" in message


@pytest.mark.parametrize("key, phase", [("on_enter", "enter"), ("on_state", "state"), ("on_exit", "exit")])
def test_handler_error_names_the_phase_that_failed(key, phase):
    def boom(ctx):
        raise ValueError("boom")

    state = {"name": "A", "on_state": lambda ctx: ctx, key: boom}
    with pytest.raises(HandlerError) as info:
        StateFlow([state]).run()
    assert (info.value.state, info.value.phase) == ("A", phase)


def test_handler_error_in_a_router_is_in_the_route_phase():
    def choose(ctx):
        raise KeyError("no route")

    flow = StateFlow([
        {"name": "A", "on_state": lambda ctx: ctx, "router": {"routes": {"B": {}}, "on_route": choose}},
        {"name": "B", "on_state": lambda ctx: ctx},
    ])
    with pytest.raises(HandlerError) as info:
        flow.run()
    assert (info.value.handler, info.value.phase) == ("on_route", "route")
