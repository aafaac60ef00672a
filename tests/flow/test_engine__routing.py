"""Routing between states and the data that travels with a transition."""

from __future__ import annotations

import pytest

from envoy_django import StateFlow
from envoy_django.exceptions import FlowError, PayloadError


def noop(ctx):
    return ctx


def record(log):
    def handler(ctx):
        log.append((ctx.state(), ctx.input(), ctx.output()))
        return ctx

    return handler


def test_without_routers_states_run_in_list_order_and_the_last_ends():
    log = []
    flow = StateFlow([{"name": n, "on_state": record(log)} for n in ("A", "B", "C")])

    ctx = flow.run("in")

    assert [entry[0] for entry in log] == ["A", "B", "C"]
    assert ctx.done() == "finished"
    assert ctx.state() == "C"


def test_next_none_ends_the_flow_even_when_states_follow():
    log = []
    flow = StateFlow([
        {"name": "A", "on_state": record(log), "router": {"next": None}},
        {"name": "B", "on_state": record(log)},
    ])

    ctx = flow.run()

    assert [entry[0] for entry in log] == ["A"]
    assert ctx.done() == "finished"
    assert ctx.step() == 1


def test_next_state_input_is_previous_output_and_output_starts_as_it():
    log = []

    def produce(ctx):
        ctx.output({"n": 1})
        return ctx

    flow = StateFlow([
        {"name": "A", "on_state": produce, "router": {"next": "B"}},
        {"name": "B", "on_state": record(log), "router": {"next": None}},
    ])

    ctx = flow.run("first input")

    assert log == [("B", {"n": 1}, {"n": 1})]
    assert ctx.output() == {"n": 1}


def test_first_state_receives_the_run_input_and_output_starts_empty():
    log = []
    StateFlow([{"name": "A", "on_state": record(log)}]).run({"job": 7})

    assert log == [("A", {"job": 7}, None)]


def test_map_with_output_and_ctx_computes_the_next_input():
    def produce(ctx):
        ctx.set("factor", 3)
        ctx.output(5)
        return ctx

    log = []
    flow = StateFlow([
        {"name": "A", "on_state": produce,
         "router": {"next": "B", "map": lambda output, ctx: output * ctx.get("factor")}},
        {"name": "B", "on_state": record(log)},
    ])

    flow.run()

    # The mapped value is B's input; B's output still starts as A's output.
    assert log == [("B", 15, 5)]


@pytest.mark.parametrize(
    ("mapper", "expected"),
    [(lambda o: [o, o], [7, 7]), (str, "7"), (float, 7.0), (lambda *args: len(args), 2)],
    ids=["one-arg-lambda", "builtin-str", "builtin-float", "varargs-gets-output-and-ctx"],
)
def test_map_accepts_one_argument_callables(mapper, expected):
    def produce(ctx):
        ctx.output(7)
        return ctx

    flow = StateFlow([
        {"name": "A", "on_state": produce, "router": {"next": "B", "map": mapper}},
        {"name": "B", "on_state": noop},
    ])

    assert flow.run().input() == expected


def test_map_result_that_is_not_json_raises_payload_error():
    flow = StateFlow([
        {"name": "A", "on_state": noop, "router": {"next": "B", "map": lambda o: {1, 2}}},
        {"name": "B", "on_state": noop},
    ])

    with pytest.raises(PayloadError, match=r"'A'.*'B'"):
        flow.run()


def test_dynamic_routes_use_the_map_of_the_chosen_route():
    def produce(ctx):
        ctx.output(ctx.input())
        return ctx

    flow = StateFlow([
        {"name": "Check", "on_state": produce, "router": {
            "routes": {
                "Double": {"description": "big numbers", "map": lambda o, ctx: o * 2},
                "Negate": lambda o: -o,
            },
            "on_route": lambda ctx: "Double" if ctx.output() > 10 else "Negate",
        }},
        {"name": "Double", "on_state": noop, "router": {"next": None}},
        {"name": "Negate", "on_state": noop, "router": {"next": None}},
    ])

    big = flow.run(20)
    small = flow.run(4)

    assert (big.state(), big.input()) == ("Double", 40)
    assert (small.state(), small.input()) == ("Negate", -4)


def test_on_route_returning_none_ends_the_flow():
    log = []
    flow = StateFlow([
        {"name": "A", "on_state": noop, "router": {"routes": {"B": {}}, "on_route": lambda ctx: None}},
        {"name": "B", "on_state": record(log)},
    ])

    ctx = flow.run()

    assert ctx.done() == "finished"
    assert ctx.state() == "A"
    assert log == []


def test_on_route_naming_a_state_outside_its_routes_raises_flow_error():
    flow = StateFlow([
        {"name": "A", "on_state": noop, "router": {"routes": {"B": {}}, "on_route": lambda ctx: "C"}},
        {"name": "B", "on_state": noop},
        {"name": "C", "on_state": noop},
    ])

    with pytest.raises(FlowError) as excinfo:
        flow.run()

    message = str(excinfo.value)
    assert "'A'" in message
    assert "'C'" in message
    assert "B" in message  # lists the routes it may choose


def test_on_route_sees_the_output_of_the_state():
    seen = []

    def on_route(ctx):
        seen.append((ctx.state(), ctx.output(), ctx.get("k")))
        return None

    def produce(ctx):
        ctx.output("out")
        ctx.set("k", "v")
        return ctx

    StateFlow([{"name": "A", "on_state": produce, "router": {"routes": {}, "on_route": on_route}}]).run()

    assert seen == [("A", "out", "v")]


def test_loops_revisit_a_state_with_its_own_output_as_input():
    def count(ctx):
        ctx.output(ctx.input() + 1)
        return ctx

    flow = StateFlow([
        {"name": "Count", "on_state": count, "router": {
            "routes": {"Count": {}, "Done": {}},
            "on_route": lambda ctx: "Count" if ctx.output() < 4 else "Done",
        }},
        {"name": "Done", "on_state": noop},
    ])

    ctx = flow.run(0)

    assert ctx.state() == "Done"
    assert ctx.output() == 4
    assert ctx.step() == 5  # Count ran four times, then Done


def test_data_persists_across_states_and_dotted_keys_nest():
    def a(ctx):
        ctx.set("user.name", "ada")
        ctx.set("user.id", 1)
        ctx.set("count", 1)
        return ctx

    seen = []

    def b(ctx):
        seen.append((ctx.get("user"), ctx.get("user.name"), ctx.get("count"), ctx.get("missing", "dflt")))
        ctx.set("count", ctx.get("count") + 1)
        return ctx

    ctx = StateFlow([{"name": "A", "on_state": a}, {"name": "B", "on_state": b}]).run()

    assert seen == [({"name": "ada", "id": 1}, "ada", 1, "dflt")]
    assert ctx.data() == {"user": {"name": "ada", "id": 1}, "count": 2}


def test_dollar_keys_are_cleared_on_each_transition_but_live_within_the_state():
    seen = []

    def a_state(ctx):
        ctx.set("$scratch", "temp")
        ctx.set("$nested.value", 1)
        ctx.set("kept", "yes")
        return ctx

    def a_exit(ctx):
        seen.append(("A exit", ctx.get("$scratch"), ctx.get("$nested.value")))
        return ctx

    def b_state(ctx):
        seen.append(("B", ctx.get("$scratch"), ctx.get("$nested.value")))
        ctx.set("$again", 2)
        return ctx

    flow = StateFlow([
        {"name": "A", "on_state": a_state, "on_exit": a_exit},
        {"name": "B", "on_state": b_state, "router": {"next": "C"}},
        {"name": "C", "on_state": noop},
    ])

    ctx = flow.run()

    assert seen == [("A exit", "temp", 1), ("B", None, None)]
    assert ctx.data() == {"kept": "yes"}

