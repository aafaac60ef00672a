"""flow.step(): one phase with work at a time, step counting and max_steps."""

from __future__ import annotations

from collections import Counter

import pytest

from envoy_django import StateFlow


def counting(calls, name, output=None):
    def handler(ctx):
        calls[name] += 1
        if output is not None:
            ctx.output(output)
        return ctx

    return handler


def drive(flow, input=None):
    """Step to the end, returning where each step's work ran and the final context."""
    ctx = flow.initial_context(input)
    phases = []
    while not ctx.done():
        result = flow.advance(ctx)
        ctx = result.context
        phases.append((result.state, result.phase, result.step))
    return phases, ctx


def test_each_step_runs_one_handler_and_folds_the_empty_phases():
    calls = Counter()
    flow = StateFlow([
        {"name": "A", "on_state": counting(calls, "A")},
        {"name": "B", "on_state": counting(calls, "B")},
    ])

    result = flow.advance(flow.initial_context())
    ctx = result.context

    assert calls == {"A": 1}
    assert (result.state, result.phase, result.step) == ("A", "state", 1)
    # The empty exit, route and B's empty enter were folded into this step.
    assert (ctx.state(), ctx.phase(), ctx.step()) == ("B", "state", 2)

    result = flow.advance(ctx)
    ctx = result.context

    assert calls == {"A": 1, "B": 1}
    assert (result.state, result.phase, result.step) == ("B", "state", 2)
    assert ctx.done() == "finished"


def test_enter_state_exit_and_dynamic_route_are_separate_steps():
    calls = Counter()
    flow = StateFlow([
        {"name": "A", "on_enter": counting(calls, "A.enter"), "on_state": counting(calls, "A.state"),
         "on_exit": counting(calls, "A.exit"),
         "router": {"routes": {"B": {}}, "on_route": lambda ctx: "B"}},
        {"name": "B", "on_state": counting(calls, "B.state")},
    ])

    phases, ctx = drive(flow)

    assert phases == [("A", "enter", 1), ("A", "state", 1), ("A", "exit", 1), ("A", "route", 1),
                      ("B", "state", 2)]
    assert all(count == 1 for count in calls.values())
    assert ctx.done() == "finished"


def test_step_returns_a_new_context_and_leaves_the_argument_alone():
    flow = StateFlow([{"name": "A", "on_state": counting(Counter(), "A", "out")}])
    ctx = flow.initial_context("in")
    before = ctx.serialize()

    after = flow.step(ctx)

    assert after is not ctx
    assert ctx.serialize() == before
    assert after.output() == "out"


def test_step_counter_starts_at_one_and_grows_by_one_per_transition():
    seen = []

    def note(ctx):
        seen.append((ctx.state(), ctx.step()))
        return ctx

    flow = StateFlow([
        {"name": "A", "on_enter": note, "on_state": note, "on_exit": note},
        {"name": "B", "on_enter": note, "on_state": note, "on_exit": note},
        {"name": "C", "on_state": note},
    ])

    ctx = flow.run()

    assert seen == [("A", 1)] * 3 + [("B", 2)] * 3 + [("C", 3)]
    assert ctx.step() == 3


def test_initial_context_is_at_the_start_state_step_one():
    flow = StateFlow([{"name": "A", "on_state": lambda c: c}, {"name": "B", "on_state": lambda c: c}],
                     start_state="B")

    ctx = flow.initial_context({"x": 1})

    assert (ctx.state(), ctx.phase(), ctx.step(), ctx.done()) == ("B", "enter", 1, None)
    assert ctx.input() == {"x": 1}


def test_a_self_loop_with_max_steps_5_stops_at_step_5():
    calls = Counter()

    def loop(ctx):
        calls["Loop"] += 1
        ctx.output(ctx.step())
        return ctx

    flow = StateFlow([{"name": "Loop", "on_state": loop, "router": {"next": "Loop"}}], max_steps=5)

    ctx = flow.run()

    assert ctx.done() == "max_steps"
    assert ctx.step() == 5
    assert calls["Loop"] == 5
    assert ctx.output() == 5  # the last output is kept
    assert "max_steps" in ctx.error()
    assert "5" in ctx.error()


def test_max_steps_stops_before_the_state_that_would_exceed_it():
    calls = Counter()
    flow = StateFlow(
        [{"name": n, "on_state": counting(calls, n, f"out of {n}")} for n in ("A", "B", "C")],
        max_steps=2,
    )

    ctx = flow.run()

    assert calls == {"A": 1, "B": 1}
    assert (ctx.done(), ctx.state(), ctx.step(), ctx.output()) == ("max_steps", "B", 2, "out of B")
    assert "'B'" in ctx.error() and "'C'" in ctx.error()


def test_ending_exactly_at_max_steps_is_a_normal_finish():
    flow = StateFlow([{"name": n, "on_state": lambda c: c} for n in ("A", "B", "C")], max_steps=3)

    ctx = flow.run()

    assert ctx.done() == "finished"
    assert ctx.error() is None


def test_default_max_steps_is_25():
    flow = StateFlow([{"name": "Loop", "on_state": lambda c: c, "router": {"next": "Loop"}}])

    ctx = flow.run()

    assert (ctx.done(), ctx.step()) == ("max_steps", 25)


@pytest.mark.parametrize("max_steps", [1, 2, 7])
def test_max_steps_counts_every_state_visit_in_a_two_state_loop(max_steps):
    flow = StateFlow(
        [{"name": "Ping", "on_state": lambda c: c, "router": {"next": "Pong"}},
         {"name": "Pong", "on_state": lambda c: c, "router": {"next": "Ping"}}],
        max_steps=max_steps,
    )

    ctx = flow.run()

    assert ctx.step() == max_steps
    assert ctx.state() == ("Ping" if max_steps % 2 else "Pong")
    assert ctx.done() == "max_steps"
