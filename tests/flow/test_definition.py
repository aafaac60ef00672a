"""Constructing a StateFlow: what is accepted, and every shape that is refused."""

from __future__ import annotations

import pytest

from envoy_django import StateFlow
from envoy_django.exceptions import FlowDefinitionError
from envoy_django.flow import Route, Router, State


def noop(ctx):
    return ctx


def out(value):
    def handler(ctx):
        ctx.output(value)
        return ctx

    return handler


def test_start_state_defaults_to_the_first_state():
    flow = StateFlow([{"name": "First", "on_state": noop}, {"name": "Second", "on_state": noop}])

    assert flow.start_state == "First"
    assert flow.initial_context().state() == "First"
    assert flow.max_steps == 25


def test_start_state_can_be_any_state_and_order_continues_from_there():
    visited = []

    def visit(ctx):
        visited.append(ctx.state())
        return ctx

    flow = StateFlow(
        [{"name": "A", "on_state": visit}, {"name": "B", "on_state": visit}, {"name": "C", "on_state": visit}],
        start_state="B",
    )

    ctx = flow.run()

    assert visited == ["B", "C"]
    assert ctx.step() == 2


def test_state_dataclass_is_accepted_like_a_dict():
    flow = StateFlow([
        State(name="A", on_state=out(1), router={"next": "B"}),
        State(name="B", on_state=noop, router=Router(kind="static", next=None)),
    ])

    ctx = flow.run()

    assert ctx.state() == "B"
    assert ctx.input() == 1


def test_router_dataclass_one_argument_map_is_wrapped_like_a_dicts():
    flow = StateFlow([
        {"name": "A", "on_state": out(2), "router": Router(kind="static", next="B", map=lambda o: o * 10)},
        {"name": "B", "on_state": noop},
    ])

    assert flow.run().input() == 20


def test_router_dataclass_dynamic_with_route_objects():
    flow = StateFlow([
        {"name": "A", "on_state": out(3), "router": Router(
            kind="dynamic",
            routes={"B": Route("B", "to B", map=lambda o: o + 1)},
            on_route=lambda ctx: "B",
        )},
        {"name": "B", "on_state": noop},
    ])

    ctx = flow.run()

    assert ctx.state() == "B"
    assert ctx.input() == 4
    assert flow.graph()["edges"][0]["description"] == "to B"


@pytest.mark.parametrize(
    ("states", "kwargs", "needles"),
    [
        pytest.param(
            [{"name": "A", "on_state": noop}, {"name": "A", "on_state": noop}], {}, ["'A'", "two states"],
            id="duplicate-name",
        ),
        pytest.param([{"name": "Lonely"}], {}, ["'Lonely'", "on_state"], id="missing-on_state"),
        pytest.param([{"name": "Lonely", "on_state": None}], {}, ["'Lonely'", "on_state"], id="on_state-none"),
        pytest.param(
            [{"name": "A", "on_state": "not callable"}], {}, ["'A'", "callable"], id="on_state-not-callable",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "on_exit": 3}], {}, ["on_exit", "'A'"], id="on_exit-not-callable",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "router": {"next": "Nowhere"}}], {}, ["'A'", "'Nowhere'"],
            id="static-next-missing",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop}], {"start_state": "Ghost"}, ["'Ghost'", "start_state"],
            id="missing-start-state",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "onState": noop}], {}, ["'A'", "onState"], id="unknown-state-key",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "router": {"next": None, "nxt": "B"}}], {}, ["'A'", "nxt"],
            id="unknown-router-key",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "router": {"routes": {"Missing": {}}, "on_route": noop}}], {},
            ["'A'", "'Missing'"], id="route-to-missing-state",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop,
              "router": {"routes": {"A": {"description": "x", "descr": "y"}}, "on_route": noop}}], {},
            ["'A'", "descr"], id="unknown-route-key",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "router": {"next": "A", "routes": {"A": {}}, "on_route": noop}}], {},
            ["'A'", "next"], id="next-and-routes",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "router": {"routes": {"A": {}}}}], {}, ["'A'", "on_route"],
            id="routes-without-on_route",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "router": {}}], {}, ["'A'", "next"], id="empty-router",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "router": {"next": 3}}], {}, ["'A'", "next"], id="next-not-a-name",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "router": Router(kind="sideways")}], {}, ["'A'", "sideways"],
            id="unknown-router-kind",
        ),
        pytest.param(
            [{"name": "A", "on_state": noop, "router": Router(kind="static", next="Z")}], {}, ["'A'", "'Z'"],
            id="router-dataclass-missing-target",
        ),
        pytest.param([], {}, ["at least one state"], id="no-states"),
        pytest.param([{"on_state": noop}], {}, ["state 0", "name"], id="no-name"),
        pytest.param([{"name": "A", "on_state": noop}, "B"], {}, ["state 1"], id="not-a-dict"),
        pytest.param([{"name": "A", "on_state": noop}], {"max_steps": 0}, ["max_steps"], id="max-steps-zero"),
        pytest.param([{"name": "A", "on_state": noop}], {"max_steps": "9"}, ["max_steps"], id="max-steps-str"),
    ],
)
def test_invalid_definitions_are_refused_with_a_message_naming_the_culprit(states, kwargs, needles):
    with pytest.raises(FlowDefinitionError) as excinfo:
        StateFlow(states, **kwargs)

    message = str(excinfo.value)
    for needle in needles:
        assert needle in message


def test_flow_definition_error_is_a_value_error():
    with pytest.raises(ValueError):
        StateFlow([])


def test_routes_may_be_descriptions_map_functions_or_dicts():
    flow = StateFlow([
        {"name": "A", "on_state": out(5), "router": {
            "routes": {"B": "plain description", "C": lambda o: o * 2, "D": {"description": "d", "map": str}},
            "on_route": lambda ctx: ctx.get("go"),
        }},
        {"name": "B", "on_state": noop, "router": {"next": None}},
        {"name": "C", "on_state": noop, "router": {"next": None}},
        {"name": "D", "on_state": noop, "router": {"next": None}},
    ])

    results = {}
    for target in ("B", "C", "D"):
        ctx = flow.initial_context()
        ctx.set("go", target)
        while not ctx.done():
            ctx = flow.step(ctx)
        results[target] = (ctx.state(), ctx.input())

    assert results == {"B": ("B", 5), "C": ("C", 10), "D": ("D", "5")}


def _noop(ctx):
    return ctx


@pytest.mark.parametrize("states, plugins, message", [
    ([{"name": "A", "on_state": _noop, "onExit": _noop}], [],
     "state 'A' has unknown key 'onExit'; did you mean 'on_exit'?"),
    ([{"name": "A", "on_state": _noop}], [{"name": "audit", "onEnter": _noop}],
     "plugin 'audit' has unknown key 'onEnter'; did you mean 'on_enter'?"),
    ([{"name": "A", "on_state": _noop}], [{"name": "audit", "dependsOn": ["x"]}],
     "plugin 'audit' has unknown key 'dependsOn'; did you mean 'depends_on'?"),
    ([{"name": "A", "on_state": _noop}], [{"name": "audit", "colour": "red"}],
     "plugin 'audit' has unknown key 'colour' (allowed: depends_on, name, on_enter, on_exit, on_route)"),
    ([{"name": "A", "on_state": _noop, "router": {"next": None, "onRoute": _noop}}], [],
     "router of state 'A' has unknown key 'onRoute'; did you mean 'on_route'?"),
])
def test_keys_the_engine_would_ignore_are_refused_naming_the_snake_case_one(states, plugins, message):
    with pytest.raises(FlowDefinitionError) as info:
        StateFlow(states, plugins=plugins)
    assert str(info.value) == message
