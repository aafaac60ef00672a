"""The ctx API on its own: values, data, ending, progress and waits."""

from __future__ import annotations

import pytest

from envoy_django.exceptions import EscalationError, FlowError, WaitNotFoundError
from envoy_django.flow import Context
from envoy_django.testing.flows import resolve


@pytest.fixture
def ctx():
    return Context("Start", {"question": "why?"})


def test_a_new_context(ctx):
    assert ctx.input() == {"question": "why?"}
    assert ctx.output() is None
    assert ctx.state() == "Start"
    assert ctx.phase() == "enter"
    assert ctx.step() == 1
    assert ctx.done() is None
    assert ctx.error() is None
    assert ctx.data() == {}
    assert ctx.waiting() == []
    assert ctx.waits() == []
    assert ctx.progress() is None


def test_output_sets_and_returns_the_value(ctx):
    assert ctx.output([1, 2]) == [1, 2]
    assert ctx.output() == [1, 2]
    ctx.output(None)
    assert ctx.output() is None


def test_set_and_get_with_dotted_keys(ctx):
    ctx.set("a.b.c", 1)
    ctx.set("a.b.d", 2)
    ctx.set("top", "t")

    assert ctx.data() == {"a": {"b": {"c": 1, "d": 2}}, "top": "t"}
    assert ctx.get("a.b") == {"c": 1, "d": 2}
    assert ctx.get("a.b.c") == 1
    assert ctx.get("top") == "t"


def test_get_returns_the_default_for_missing_keys(ctx):
    ctx.set("a.b", 1)
    ctx.set("falsy", 0)

    assert ctx.get("missing") is None
    assert ctx.get("missing", "dflt") == "dflt"
    assert ctx.get("a.x", 5) == 5
    assert ctx.get("a.b.deeper", "none") == "none"  # 1 is not a dict
    assert ctx.get("falsy", "dflt") == 0


def test_set_through_a_non_dict_replaces_it_with_a_dict(ctx):
    ctx.set("a", 1)
    ctx.set("a.b", 2)

    assert ctx.get("a") == {"b": 2}


@pytest.mark.parametrize("key", ["", "a..b", ".a", "a.", 3, None])
def test_invalid_data_keys_raise(ctx, key):
    with pytest.raises(FlowError, match="key"):
        ctx.set(key, 1)
    with pytest.raises(FlowError, match="key"):
        ctx.get(key)


def test_data_returns_a_copy(ctx):
    ctx.set("items", [1])

    copy = ctx.data()
    copy["items"].append(2)
    copy["new"] = True

    assert ctx.data() == {"items": [1]}


def test_copy_is_independent(ctx):
    ctx.set("items", [1])
    ctx.wait_for("w")

    other = ctx.copy()
    other.set("items", [2])
    other.output("changed")
    other = resolve(other, "w", "resolved", 1)

    assert ctx.get("items") == [1]
    assert ctx.output() is None
    assert ctx.waiting() == ["w"]
    assert other == other.copy()
    assert other != ctx


def test_error_ends_the_flow_as_failed(ctx):
    assert ctx.error("it broke") == "it broke"

    assert ctx.done() == "error"
    assert ctx.error() == "it broke"


def test_error_message_is_made_a_string(ctx):
    ctx.error(ValueError("bad value"))

    assert ctx.error() == "bad value"


def test_progress(ctx):
    assert ctx.progress(0.25, "a quarter") == {"fraction": 0.25, "message": "a quarter"}
    assert ctx.progress() == {"fraction": 0.25, "message": "a quarter"}
    ctx.progress(1)
    assert ctx.progress() == {"fraction": 1.0, "message": None}


@pytest.mark.parametrize("fraction", [-0.1, 1.01, 7])
def test_progress_outside_zero_to_one_raises_naming_the_state(ctx, fraction):
    with pytest.raises(FlowError, match="'Start'"):
        ctx.progress(fraction)


# --- waits ---------------------------------------------------------------------


def test_wait_for_uses_the_given_ids(ctx):
    assert ctx.wait_for("payment") == ["payment"]
    assert ctx.wait_for(["a", {"id": "b", "params": {"k": 1}}]) == ["a", "b"]

    assert ctx.waiting() == ["payment", "a", "b"]
    assert [w["type"] for w in ctx.waits()] == ["event"] * 3
    assert ctx.waits()[2]["params"] == {"k": 1}


def test_wait_for_timeout_is_recorded(ctx):
    ctx.wait_for("slow", timeout=2.5)

    assert ctx.waits()[0]["timeout"] == 2.5


@pytest.mark.parametrize("timeout", [0, -1, "10"])
def test_wait_for_refuses_a_bad_timeout(ctx, timeout):
    with pytest.raises(FlowError, match="timeout"):
        ctx.wait_for("x", timeout=timeout)
    assert ctx.waiting() == []


@pytest.mark.parametrize("item", [3, {"no": "id"}, {"id": 5}, None])
def test_wait_for_refuses_items_that_are_not_ids(ctx, item):
    with pytest.raises(FlowError, match="'Start'"):
        ctx.wait_for([item])


def test_wait_for_refuses_spawn_and_escalation_types(ctx):
    with pytest.raises(FlowError, match="spawn"):
        ctx.wait_for({"id": "c", "type": "spawn"})


def test_waiting_twice_for_a_pending_id_raises(ctx):
    ctx.wait_for("x")

    with pytest.raises(FlowError, match="'x'"):
        ctx.wait_for("x")


def test_spawn_returns_distinct_generated_string_ids(ctx):
    first = ctx.spawn("child", {"n": 1})
    second = ctx.spawn("child", {"n": 2})

    assert isinstance(first, str) and isinstance(second, str)
    assert first != second
    assert ctx.waiting() == [first, second]
    assert ctx.waits()[1]["params"] == {"flow": "child", "input": {"n": 2}}


@pytest.mark.parametrize("name", ["", None, 3])
def test_spawn_needs_a_flow_name(ctx, name):
    with pytest.raises(FlowError, match="flow name"):
        ctx.spawn(name)


def test_escalate_returns_an_id_and_normalizes_inputs(ctx):
    esc = ctx.escalate("alice", "Approve?", [
        {"id": "reason", "type": "select", "options": ["a", "b"]},
        {"id": "note", "type": "comment", "label": "Note"},
    ])

    assert isinstance(esc, str)
    assert ctx.waiting() == [esc]
    params = ctx.waits()[0]["params"]
    assert params["user"] == "alice"
    assert params["on_reject"] == "fail"
    reason, note = params["inputs"]
    assert reason["options"] == [["a", "a"], ["b", "b"]]  # pairs: jsonb keeps a list's order
    assert reason["required"] is True
    assert reason["label"] == "reason"
    assert note["required"] is False
    assert note["label"] == "Note"


def test_escalate_without_inputs(ctx):
    esc = ctx.escalate("alice", "Go?")

    assert ctx.waits()[0]["params"]["inputs"] == []
    assert ctx.waiting() == [esc]


@pytest.mark.parametrize(
    ("args", "kwargs", "needle"),
    [
        (("", "m"), {}, "user"),
        (("alice", "m", [{"id": "x", "type": "slider"}]), {}, "slider"),
        (("alice", "m", [{"id": "x", "type": "select"}]), {}, "options"),
        (("alice", "m", [{"id": "x", "type": "comment"}, {"id": "x", "type": "comment"}]), {}, "twice"),
        (("alice", "m", [{"type": "comment"}]), {}, "id"),
        (("alice", "m", {"id": "x"}), {}, "list"),
        (("alice", "m"), {"on_reject": "ignore"}, "on_reject"),
    ],
    ids=["no-user", "unknown-type", "select-no-options", "duplicate-id", "no-id", "not-a-list", "bad-on_reject"],
)
def test_escalate_refuses_bad_arguments(ctx, args, kwargs, needle):
    with pytest.raises(EscalationError, match=needle):
        ctx.escalate(*args, **kwargs)
    assert ctx.waiting() == []


def test_result_is_none_while_pending_then_the_outcome(ctx):
    [wait_id] = ctx.wait_for("w")
    assert ctx.result(wait_id) is None

    ctx = resolve(ctx, wait_id, "resolved", {"x": [1]})

    assert ctx.result(wait_id) == {"status": "resolved", "value": {"x": [1]}, "error": None}
    assert ctx.waiting() == []
    # The result is a copy: changing it does not change the context.
    ctx.result(wait_id)["value"]["x"].append(2)
    assert ctx.result(wait_id)["value"] == {"x": [1]}


@pytest.mark.parametrize("status", ["resolved", "done", "failed", "cancelled", "approved", "rejected", "timeout"])
def test_resolve_accepts_every_terminal_status(ctx, status):
    ctx.wait_for("w")

    ctx = resolve(ctx, "w", status, error="why" if status == "failed" else None)

    assert ctx.result("w")["status"] == status


def test_resolve_refuses_an_unknown_status(ctx):
    ctx.wait_for("w")

    with pytest.raises(FlowError, match="'pending'"):
        ctx = resolve(ctx, "w", "pending")
    assert ctx.waiting() == ["w"]


def test_unknown_wait_ids_raise_wait_not_found(ctx):
    with pytest.raises(WaitNotFoundError, match="'nope'"):
        ctx.result("nope")
    with pytest.raises(WaitNotFoundError, match="'nope'"):
        ctx = resolve(ctx, "nope", "resolved")


def test_notes_belong_to_the_step_that_made_them():
    from envoy_django import StateFlow

    def noisy(ctx):
        ctx.note("checked", items=3)
        return ctx

    flow = StateFlow([{"name": "A", "on_state": noisy}, {"name": "B", "on_state": lambda ctx: ctx}])
    ctx = flow.step(flow.initial_context())
    assert ctx.notes() == [{"kind": "checked", "items": 3}]
    assert flow.step(ctx).notes() == []


def test_a_note_must_be_json():
    from envoy_django import StateFlow
    from envoy_django.exceptions import PayloadError

    def bad(ctx):
        ctx.note("when", at={1, 2})
        return ctx

    flow = StateFlow([{"name": "A", "on_state": bad}])
    with pytest.raises(PayloadError, match="notes"):
        flow.run()
