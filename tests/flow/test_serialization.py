"""ctx.serialize() / Context.from_serialized(): a lossless JSON checkpoint."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envoy_django import StateFlow
from envoy_django.exceptions import FlowError
from envoy_django.flow import Context
from envoy_django.testing.flows import resolve

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15,
)
data_keys = st.text(min_size=1, max_size=8).filter(lambda key: "." not in key)
statuses = st.sampled_from(["resolved", "done", "failed", "cancelled", "approved", "rejected", "timeout"])


def through_json(ctx: Context) -> Context:
    text = json.dumps(ctx.serialize(), allow_nan=False)  # strict JSON: what a JSON column stores
    return Context.from_serialized(json.loads(text))


def assert_same(restored: Context, ctx: Context) -> None:
    assert restored == ctx
    assert restored.serialize() == ctx.serialize()
    # The public view agrees too, not only the raw dict.
    assert (restored.input(), restored.output(), restored.data()) == (ctx.input(), ctx.output(), ctx.data())
    assert (restored.state(), restored.phase(), restored.step(), restored.done()) == (
        ctx.state(), ctx.phase(), ctx.step(), ctx.done())
    assert restored.waiting() == ctx.waiting()
    assert restored.waits() == ctx.waits()
    assert restored.progress() == ctx.progress()


def _collect(ctx):
    ctx.wait_for(["first", {"id": "second", "params": {"hint": ctx.get("params")}}], timeout=5)
    ctx.set("collected", True)
    ctx.progress(0.5, "waiting")
    return ctx


def _summarize(ctx):
    ctx.output({
        "input": ctx.input(),
        "previous": ctx.output(),
        "first": ctx.result("first"),
        "second": ctx.result("second"),
        "data": ctx.data(),
    })
    return ctx


def _finish(ctx):
    ctx.set("finished_with", ctx.input())
    ctx.output([ctx.output(), ctx.step()])
    return ctx


FLOW = StateFlow([
    {"name": "Collect", "on_state": _collect, "on_exit": _summarize,
     "router": {"routes": {"Finish": {"map": lambda output, ctx: [output, ctx.get("params")]}},
                "on_route": lambda ctx: "Finish"}},
    {"name": "Finish", "on_state": _finish, "router": {"next": None}},
])


def step_both_to_the_end(ctx: Context, restored: Context) -> Context:
    while not ctx.done():
        result, restored_result = FLOW.advance(ctx), FLOW.advance(restored)
        ctx, restored = result.context, restored_result.context
        assert_same(restored, ctx)
        assert (restored_result.state, restored_result.phase, restored_result.step) == (
            result.state, result.phase, result.step)
        # A checkpoint taken at every step restores to the same context.
        assert_same(through_json(ctx), ctx)
    return ctx


@settings(max_examples=100, deadline=None)
@given(
    input=json_values,
    output=json_values,
    data=st.dictionaries(data_keys, json_values, max_size=4),
    params=json_values,
    first=st.tuples(statuses, json_values, st.none() | st.text(max_size=20)),
    second=st.tuples(statuses, json_values, st.none() | st.text(max_size=20)),
)
def test_round_trip_is_lossless_and_the_restored_context_steps_identically(
    input, output, data, params, first, second,
):
    ctx = FLOW.initial_context(input)
    ctx.output(output)
    for key, value in data.items():
        ctx.set(key, value)
    ctx.set("params", params)
    assert_same(through_json(ctx), ctx)

    ctx = FLOW.step(ctx)  # Collect's on_state: blocks on two pending waits
    assert ctx.waiting() == ["first", "second"]
    assert_same(through_json(ctx), ctx)

    ctx = resolve(ctx, "first", *first)  # one resolved, one pending
    restored = through_json(ctx)
    assert_same(restored, ctx)
    assert restored.result("first") == {"status": first[0], "value": first[1], "error": first[2]}
    assert restored.result("second") is None

    ctx = resolve(ctx, "second", *second)
    restored = resolve(restored, "second", *second)
    assert_same(restored, ctx)
    restored = through_json(ctx)

    final = step_both_to_the_end(ctx, restored)

    assert final.done() == "finished"
    summary, step = final.output()
    assert step == 2
    assert summary["input"] == input
    assert summary["previous"] == output
    assert summary["first"]["value"] == first[1]
    assert summary["second"]["value"] == second[1]
    assert final.input() == [summary, params]


def test_from_serialized_copies_its_argument():
    ctx = Context("A", {"x": [1]})
    data = ctx.serialize()

    restored = Context.from_serialized(data)
    data["input"]["x"].append(2)

    assert restored.input() == {"x": [1]}


def test_serialize_returns_a_copy():
    ctx = Context("A")
    ctx.set("items", [1])

    ctx.serialize()["data"]["items"].append(2)

    assert ctx.get("items") == [1]


def test_restored_context_of_an_ended_flow_stays_ended():
    ctx = FLOW.initial_context()
    ctx.error("stopped")

    restored = through_json(ctx)

    assert (restored.done(), restored.error()) == ("error", "stopped")
    with pytest.raises(FlowError, match="already ended"):
        FLOW.step(restored)


@pytest.mark.parametrize(
    "data",
    [None, [], "ctx", {}, {"version": 999, "state": "A"}, {"version": 1, "state": "A"}],
    ids=["none", "list", "str", "empty", "wrong-version", "missing-keys"],
)
def test_from_serialized_refuses_what_is_not_a_context(data):
    with pytest.raises(FlowError):
        Context.from_serialized(data)
