"""Plugins: hooks around every state, ordered by their dependencies."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from envoy_django import StateFlow
from envoy_django.exceptions import FlowDefinitionError, FlowError, HandlerError
from envoy_django.flow import Plugin


def noop(ctx):
    return ctx


def logging_plugin(name, log, depends_on=()):
    return {
        "name": name,
        "depends_on": depends_on,
        "on_enter": lambda ctx, state: log.append((name, "enter", state)),
        "on_exit": lambda ctx, state: log.append((name, "exit", state)),
        "on_route": lambda ctx, proposed: log.append((name, "route", proposed)) or proposed,
    }


def two_states(**kwargs):
    return StateFlow(
        [{"name": "A", "on_state": noop, "router": {"next": "B"}},
         {"name": "B", "on_state": noop, "router": {"next": None}}],
        **kwargs,
    )


def test_plugins_run_dependencies_first_in_every_hook():
    log = []
    plugins = [
        logging_plugin("audit", log, depends_on=("metrics",)),
        logging_plugin("metrics", log, depends_on="logger"),
        logging_plugin("logger", log),
        logging_plugin("extra", log),
    ]
    flow = two_states(plugins=plugins)

    assert [p.name for p in flow.plugins] == ["logger", "metrics", "audit", "extra"]

    flow.run()

    order = ["logger", "metrics", "audit", "extra"]
    expected = (
        [(n, "enter", "A") for n in order] + [(n, "exit", "A") for n in order]
        + [(n, "route", "B") for n in order]
        + [(n, "enter", "B") for n in order] + [(n, "exit", "B") for n in order]
        + [(n, "route", None) for n in order]
    )
    assert log == expected


def test_plugins_without_dependencies_keep_the_given_order():
    log = []
    flow = two_states(plugins=[logging_plugin("z", log), logging_plugin("a", log)])

    flow.run()

    assert [entry[0] for entry in log[:2]] == ["z", "a"]


def test_plugin_hooks_wrap_the_states_own_handlers():
    log = []

    def handler(label):
        def run(ctx):
            log.append(("state", label, ctx.state()))
            return ctx

        return run

    flow = StateFlow(
        [{"name": "A", "on_enter": handler("on_enter"), "on_state": handler("on_state"),
          "on_exit": handler("on_exit")}],
        plugins=[logging_plugin("p", log)],
    )

    flow.run()

    assert log == [
        ("p", "enter", "A"), ("state", "on_enter", "A"), ("state", "on_state", "A"),
        ("state", "on_exit", "A"), ("p", "exit", "A"), ("p", "route", None),
    ]


def test_plugin_on_route_can_redirect_the_flow():
    visited = []

    def visit(ctx):
        visited.append(ctx.state())
        return ctx

    detour = {"name": "detour", "on_route": lambda ctx, proposed: "Audit" if ctx.state() == "A" else proposed}
    flow = StateFlow(
        [{"name": "A", "on_state": visit, "router": {"next": "B"}},
         {"name": "B", "on_state": visit, "router": {"next": None}},
         {"name": "Audit", "on_state": visit, "router": {"next": "B"}}],
        plugins=[detour],
    )

    ctx = flow.run()

    assert visited == ["A", "Audit", "B"]
    assert ctx.done() == "finished"


def test_plugin_on_route_sees_the_dynamic_routers_choice():
    proposals = []
    spy = {"name": "spy", "on_route": lambda ctx, proposed: proposals.append(proposed) or proposed}
    flow = StateFlow(
        [{"name": "A", "on_state": noop, "router": {"routes": {"C": {}, "B": {}}, "on_route": lambda c: "C"}},
         {"name": "B", "on_state": noop, "router": {"next": None}},
         {"name": "C", "on_state": noop, "router": {"next": None}}],
        plugins=[spy],
    )

    ctx = flow.run()

    assert proposals == ["C", None]
    assert ctx.state() == "C"


def test_plugin_on_route_naming_an_unknown_state_raises():
    flow = two_states(plugins=[{"name": "lost", "on_route": lambda ctx, proposed: "Nowhere"}])

    with pytest.raises(FlowError) as excinfo:
        flow.run()

    message = str(excinfo.value)
    assert "'lost'" in message and "'Nowhere'" in message and "'A'" in message


def test_plugin_may_change_the_context_in_place_or_return_it():
    def in_place(ctx, state):
        ctx.set(f"visits.{state}", True)

    def returned(ctx, state):
        ctx.set("count", ctx.get("count", 0) + 1)
        return ctx

    flow = two_states(plugins=[{"name": "a", "on_enter": in_place}, {"name": "b", "on_exit": returned}])

    ctx = flow.run()

    assert ctx.data() == {"visits": {"A": True, "B": True}, "count": 2}


def test_plugin_returning_something_else_raises_naming_the_plugin():
    flow = two_states(plugins=[{"name": "sloppy", "on_enter": lambda ctx, state: "oops"}])

    with pytest.raises(FlowError) as excinfo:
        flow.run()

    assert "'sloppy'" in str(excinfo.value)
    assert "'A'" in str(excinfo.value)


def test_plugin_that_raises_gives_handler_error_naming_the_plugin():
    def explode(ctx, state):
        raise RuntimeError("metrics down")

    flow = two_states(plugins=[{"name": "metrics", "on_exit": explode}])

    with pytest.raises(HandlerError) as excinfo:
        flow.run()

    assert excinfo.value.state == "A"
    assert "metrics" in excinfo.value.handler
    assert "on_exit" in excinfo.value.handler
    assert isinstance(excinfo.value.original, RuntimeError)


def test_plugins_may_be_objects_or_plugin_dataclasses():
    log = []

    class Counter:
        name = "counter"
        depends_on = ("tagger",)

        def on_enter(self, ctx, state):
            log.append(("counter", state))

    tagger = Plugin(name="tagger", on_enter=lambda ctx, state: log.append(("tagger", state)))
    simple = SimpleNamespace(name="simple", on_exit=lambda ctx, state: log.append(("simple", state)))

    two_states(plugins=[Counter(), tagger, simple]).run()

    assert log == [("tagger", "A"), ("counter", "A"), ("simple", "A"),
                   ("tagger", "B"), ("counter", "B"), ("simple", "B")]


def test_plugin_hooks_make_their_phases_separate_steps():
    flow = two_states(plugins=[{"name": "p", "on_enter": lambda ctx, state: None}])
    ctx = flow.initial_context()
    phases = []
    while not ctx.done():
        result = flow.advance(ctx)
        ctx = result.context
        phases.append((result.state, result.phase, result.step))

    assert phases == [("A", "enter", 1), ("A", "state", 1), ("B", "enter", 2), ("B", "state", 2)]


def test_missing_dependency_is_refused_naming_both_plugins():
    with pytest.raises(FlowDefinitionError) as excinfo:
        two_states(plugins=[{"name": "audit", "depends_on": ["logger"]}])

    assert "'audit'" in str(excinfo.value) and "'logger'" in str(excinfo.value)


@pytest.mark.parametrize(
    ("plugins", "cycle"),
    [
        ([{"name": "a", "depends_on": ["b"]}, {"name": "b", "depends_on": ["a"]}], "a -> b -> a"),
        ([{"name": "a", "depends_on": ["b"]}, {"name": "b", "depends_on": ["c"]},
          {"name": "c", "depends_on": ["a"]}], "a -> b -> c -> a"),
        ([{"name": "self", "depends_on": ["self"]}], "self -> self"),
    ],
    ids=["two", "three", "self"],
)
def test_dependency_cycles_are_refused(plugins, cycle):
    with pytest.raises(FlowDefinitionError, match="cycle") as excinfo:
        two_states(plugins=plugins)

    assert cycle in str(excinfo.value)


@pytest.mark.parametrize(
    ("plugins", "needle"),
    [
        ([{"name": "x"}, {"name": "x"}], "'x'"),
        ([{"on_enter": noop}], "plugin 0"),
        ([{"name": "x", "on_exit": "not callable"}], "'x'"),
    ],
    ids=["duplicate", "no-name", "hook-not-callable"],
)
def test_bad_plugins_are_refused(plugins, needle):
    with pytest.raises(FlowDefinitionError, match=needle):
        two_states(plugins=plugins)
