"""Every example of the original Envoy README, translated to Python and asserted."""

from __future__ import annotations

import random

import pytest

from envoy_django import StateFlow
from envoy_django.exceptions import WaitInRunError
from envoy_django.testing.flows import resolve


def test_minimal_three_state_example():
    async def start(ctx):
        ctx.output("Hello!")
        return ctx

    async def middle(ctx):
        ctx.output(ctx.output() + " Middle!")
        return ctx

    async def end(ctx):
        ctx.output(ctx.output() + " End!")
        return ctx

    flow = StateFlow([
        {"name": "Start", "on_state": start, "router": {"next": "Middle"}},
        {"name": "Middle", "on_state": middle, "router": {"next": "End"}},
        {"name": "End", "on_state": end, "router": {"next": None}},
    ])

    ctx = flow.run()

    assert ctx.output() == "Hello! Middle! End!"
    assert ctx.done() == "finished"
    assert ctx.state() == "End"
    assert ctx.step() == 3


def test_static_routing_always_goes_to_the_named_state():
    visited = []

    def visit(ctx):
        visited.append(ctx.state())
        return ctx

    flow = StateFlow([
        {"name": "A", "on_state": visit, "router": {"next": "B"}},
        {"name": "Skipped", "on_state": visit},
        {"name": "B", "on_state": visit, "router": {"next": None}},
    ])

    assert flow.run().done() == "finished"
    assert visited == ["A", "B"]


def _random_flow():
    def a(ctx):
        ctx.output(random.random())
        return ctx

    def on_route(ctx):
        return "B" if ctx.output() > 0.5 else "C"

    def b(ctx):
        ctx.output("went to B")
        return ctx

    def c(ctx):
        ctx.output("went to C")
        return ctx

    return StateFlow([
        {
            "name": "A",
            "on_state": a,
            "router": {
                "routes": {"B": {"description": "route to B"}, "C": {"description": "route to C"}},
                "on_route": on_route,
            },
        },
        {"name": "B", "on_state": b, "router": {"next": None}},
        {"name": "C", "on_state": c, "router": {"next": None}},
    ])


@pytest.mark.parametrize(
    ("draw", "expected"),
    [(0.9, "went to B"), (0.51, "went to B"), (0.5, "went to C"), (0.1, "went to C")],
)
def test_dynamic_routing_with_a_router_function(monkeypatch, draw, expected):
    monkeypatch.setattr(random, "random", lambda: draw)

    ctx = _random_flow().run()

    assert ctx.output() == expected
    assert ctx.input() == draw  # the chosen state receives A's output


def test_dynamic_routing_follows_the_seeded_random_draw():
    saved = random.getstate()
    outcomes = []
    try:
        for seed in range(20):
            expected = "went to B" if random.Random(seed).random() > 0.5 else "went to C"
            random.seed(seed)
            outcomes.append(_random_flow().run().output())
            assert outcomes[-1] == expected, seed
    finally:
        random.setstate(saved)
    assert set(outcomes) == {"went to B", "went to C"}


def _branching_flow():
    def check(ctx):
        ctx.output(ctx.input())
        return ctx

    async def on_route(ctx):
        return "Big" if ctx.output() > 10 else "Small"

    def big(ctx):
        ctx.output("Big number!")
        return ctx

    def small(ctx):
        ctx.output("Small number!")
        return ctx

    return StateFlow([
        {
            "name": "Check",
            "on_state": check,
            "router": {"routes": {"Big": lambda o: o, "Small": lambda o: o}, "on_route": on_route},
        },
        {"name": "Big", "on_state": big, "router": {"next": None}},
        {"name": "Small", "on_state": small, "router": {"next": None}},
    ])


@pytest.mark.parametrize(
    ("number", "state", "message"),
    [(42, "Big", "Big number!"), (11, "Big", "Big number!"), (10, "Small", "Small number!"),
     (3, "Small", "Small number!")],
)
def test_conditional_branching(number, state, message):
    ctx = _branching_flow().run(number)

    assert ctx.output() == message
    assert ctx.state() == state
    assert ctx.input() == number  # the route's map ``o => o`` passed the number on
    assert ctx.done() == "finished"


def test_on_enter_and_on_exit_set_data():
    seen = {}

    def on_enter(ctx):
        seen["enter"] = ctx.data()
        ctx.set("entered", True)
        return ctx

    def on_state(ctx):
        seen["state"] = ctx.data()
        return ctx

    def on_exit(ctx):
        seen["exit"] = ctx.data()
        ctx.set("exited", True)
        return ctx

    flow = StateFlow([
        {"name": "Example", "on_enter": on_enter, "on_state": on_state, "on_exit": on_exit,
         "router": {"next": None}},
    ])

    ctx = flow.run()

    assert ctx.data() == {"entered": True, "exited": True}
    assert seen == {"enter": {}, "state": {"entered": True}, "exit": {"entered": True}}


def test_ctx_object_example():
    def on_state(ctx):
        value = ctx.input()
        ctx.set("foo", 42)
        ctx.output("Result: " + value)
        return ctx

    ctx = StateFlow([{"name": "S", "on_state": on_state}]).run("hi")

    assert ctx.output() == "Result: hi"
    assert ctx.get("foo") == 42


def test_plugins_log_enter_and_exit():
    log = []
    my_plugin = {
        "name": "logger",
        "on_enter": lambda ctx, state: log.append(("Entering", state)),
        "on_exit": lambda ctx, state: log.append(("Exiting", state)),
    }

    def noop(ctx):
        return ctx

    flow = StateFlow(
        [{"name": "A", "on_state": noop, "router": {"next": "B"}},
         {"name": "B", "on_state": noop, "router": {"next": None}}],
        plugins=[my_plugin],
    )

    assert flow.run().done() == "finished"
    assert log == [("Entering", "A"), ("Exiting", "A"), ("Entering", "B"), ("Exiting", "B")]


def _spawning_flow():
    def parent(ctx):
        ctx.set("child", ctx.spawn("childWorkflow", {"some": "input"}))
        return ctx

    def collect(ctx):
        ctx.output(ctx.result(ctx.get("child"))["value"])
        return ctx

    return StateFlow([
        {"name": "Parent", "on_state": parent, "router": {"next": "Collect"}},
        {"name": "Collect", "on_state": collect, "router": {"next": None}},
    ])


def test_spawning_a_child_blocks_until_it_completes_then_receives_its_output():
    flow = _spawning_flow()

    ctx = flow.step(flow.initial_context())

    child_id = ctx.get("child")
    assert ctx.waiting() == [child_id]
    [wait] = ctx.waits()
    assert wait["type"] == "spawn"
    assert wait["params"] == {"flow": "childWorkflow", "input": {"some": "input"}}

    ctx = resolve(ctx, child_id, "done", {"answer": 42})
    ctx = flow.step(ctx)

    assert ctx.done() == "finished"
    assert ctx.output() == {"answer": 42}


def test_spawning_inside_run_says_to_schedule_a_job():
    with pytest.raises(WaitInRunError, match="schedule"):
        _spawning_flow().run()


def test_escalation_example():
    def ask(ctx):
        ctx.set("esc", ctx.escalate("alice", "Approve this action?", [
            {"id": "reason", "type": "select", "label": "Reason", "options": {"a": "A", "b": "B"}},
            {"id": "note", "type": "comment", "label": "Note"},
        ]))
        return ctx

    def after(ctx):
        ctx.output(ctx.result(ctx.get("esc")))
        return ctx

    flow = StateFlow([
        {"name": "Ask", "on_state": ask, "on_exit": after, "router": {"next": None}},
    ])

    ctx = flow.step(flow.initial_context())
    esc = ctx.get("esc")
    assert ctx.waiting() == [esc]
    [wait] = ctx.waits()
    assert wait["type"] == "escalation"
    assert wait["params"]["user"] == "alice"
    assert wait["params"]["message"] == "Approve this action?"
    assert [i["id"] for i in wait["params"]["inputs"]] == ["reason", "note"]
    assert wait["params"]["inputs"][0]["options"] == [["a", "A"], ["b", "B"]]

    ctx = resolve(ctx, esc, "approved", {"reason": "a", "note": "Looks good"})
    ctx = flow.step(ctx)

    assert ctx.done() == "finished"
    assert ctx.output() == {"status": "approved", "value": {"reason": "a", "note": "Looks good"}, "error": None}
