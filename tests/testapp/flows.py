"""Flows the scheduler tests run; autodiscovered like any app's flows.py."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from envoy_django import StateFlow, register

calls: Counter = Counter()


def _set_output(value):
    def handler(ctx):
        ctx.output(value(ctx))
        return ctx

    return handler


register("hello", StateFlow([
    {"name": "Start", "on_state": _set_output(lambda ctx: f"Hello {ctx.input() or 'world'}!")},
    {"name": "End", "on_state": _set_output(lambda ctx: ctx.output() + " Bye!")},
]))


def _double(ctx):
    value = ctx.input()
    if value == "fail":
        raise ValueError("child was asked to fail")
    if value == "wait":
        ctx.wait_for(["go"])
        return ctx
    ctx.output(value * 2 if not isinstance(value, dict) else value)
    return ctx


register("child", StateFlow([{"name": "Double", "on_state": _double}]))
# The same flow with its messages on another queue (register(..., queue=)).
register("urgent_child", StateFlow([{"name": "Double", "on_state": _double}]), queue="envoy-priority")


def _spawn_two(ctx):
    ctx.set("config", ctx.input())
    inputs = ctx.input().get("children", [1, 2])
    ctx.set("children", [ctx.spawn("child", value) for value in inputs])
    return ctx


def _collect(ctx):
    ctx.set("child_results", [ctx.result(w) for w in ctx.get("children")])
    ctx.wait_for(["payment"], timeout=ctx.get("config.timeout"))
    return ctx


def _escalate(ctx):
    ctx.set("payment", ctx.result("payment"))
    ctx.set("escalation", ctx.escalate(
        ctx.get("config.reviewer", "alice"),
        "Approve this action?",
        [
            {"id": "reason", "type": "select", "label": "Reason", "options": {"a": "A", "b": "B"}},
            {"id": "note", "type": "comment", "label": "Note"},
            {"id": "ok", "type": "approve", "label": "Looks right"},
        ],
        on_reject=ctx.get("config.on_reject", "fail"),
    ))
    return ctx


def _finish(ctx):
    reply = ctx.result(ctx.get("escalation"))
    ctx.output({"reply": reply, "children": ctx.get("child_results"), "payment": ctx.get("payment")})
    return ctx


register("family", StateFlow([
    {"name": "Spawn", "on_state": _spawn_two, "on_exit": _collect},
    {"name": "Escalate", "on_state": _escalate},
    {"name": "Finish", "on_state": _finish},
]))


def _flaky(ctx):
    calls["flaky"] += 1
    if calls["flaky"] <= ctx.input():
        raise RuntimeError(f"flaky failure {calls['flaky']}")
    ctx.output(calls["flaky"])
    return ctx


register("flaky", StateFlow([{"name": "Try", "on_state": _flaky}]))


def _bad_return(ctx):
    return None


register("bad_return", StateFlow([{"name": "Broken", "on_state": _bad_return}]))


def _spawn_missing(ctx):
    ctx.spawn("no_such_flow", {})
    return ctx


register("spawn_missing", StateFlow([{"name": "Spawner", "on_state": _spawn_missing}]))


def _loop(ctx):
    ctx.output((ctx.output() or 0) + 1)
    return ctx


register("loop", StateFlow([{"name": "Again", "on_state": _loop, "router": {"next": "Again"}}], max_steps=5))


def _noop(ctx):
    # ENVOY_TEST_STATE_DELAY lets worker tests hold a job mid-state.
    delay = float(os.environ.get("ENVOY_TEST_STATE_DELAY") or 0)
    if delay:
        time.sleep(delay)
    ctx.output(ctx.step())
    return ctx


register("ten_states", StateFlow([{"name": f"S{i}", "on_state": _noop} for i in range(10)]))


def _slow_state(ctx):
    if ctx.state() == "Before":
        ctx.set("seconds", ctx.input().get("seconds", 0))
    if ctx.state() == "Slow":
        time.sleep(float(ctx.get("seconds")))
    ctx.output(ctx.state())
    return ctx


register("slow", StateFlow([
    {"name": "Before", "on_state": _slow_state},
    {"name": "Slow", "on_state": _slow_state},
    {"name": "After", "on_state": _slow_state},
]))


def _parent_of_waiting_child(ctx):
    ctx.set("child", ctx.spawn("child", "wait"))
    return ctx


register("parent_of_waiting_child", StateFlow([{"name": "Spawn", "on_state": _parent_of_waiting_child}]))


def _nest(ctx):
    if ctx.input() > 0:
        ctx.set("below", ctx.spawn("nested", ctx.input() - 1))
    return ctx


def _nest_count(ctx):
    below = ctx.get("below")
    result = ctx.result(below) if below else {"status": "done", "value": -1}
    ctx.output(result["value"] + 1 if result["status"] == "done" else result["status"])
    return ctx


# nested(n): a chain of n + 1 jobs, each the parent of the next; each outputs its depth below
# (or how the job below it ended, if not done).
register("nested", StateFlow([{"name": "Spawn", "on_state": _nest, "on_exit": _nest_count}]))


def _spawn_pair(ctx):
    ctx.set("pair", [ctx.spawn("child", ctx.input()), ctx.spawn("child", ctx.input() + 1)])
    return ctx


def _add_pair(ctx):
    ctx.output(sum(ctx.result(wait)["value"] for wait in ctx.get("pair")))
    return ctx


# pair(n): two children that end at about the same time, on different workers; outputs 2n + 2(n + 1).
register("pair", StateFlow([{"name": "Spawn", "on_state": _spawn_pair, "on_exit": _add_pair}]))


def _ask(ctx):
    inputs = [{"id": "reason", "type": "select", "label": "Reason", "options": ["a", "b"]}]
    ctx.set("question", ctx.escalate("alice", "Go ahead?", inputs))
    return ctx


def _answered(ctx):
    ctx.output(ctx.result(ctx.get("question"))["status"])
    return ctx


register("ask", StateFlow([{"name": "Ask", "on_state": _ask}, {"name": "Answered", "on_state": _answered}]))


def _await_go(ctx):
    ctx.wait_for(["go"])
    return ctx


def _went(ctx):
    ctx.output(ctx.result("go")["value"])
    return ctx


register("await_go", StateFlow([{"name": "Await", "on_state": _await_go}, {"name": "Went", "on_state": _went}]))


def _ask_someone(ctx):
    config = ctx.input()
    inputs = [
        {"id": "verdict", "type": "select", "label": "Verdict",
         "options": {"revise": "Revise", "publish": "Publish", "archive": "Archive"}},
        {"id": "sure", "type": "approve", "label": "I checked it"},
    ]
    ctx.set("question", ctx.escalate(config.get("user"), "Publish?", inputs, group=config.get("group")))
    return ctx


def _reply(ctx):
    ctx.output(ctx.result(ctx.get("question")))
    return ctx


register("ask_someone", StateFlow([
    {"name": "Ask", "on_state": _ask_someone},
    {"name": "Answered", "on_state": _reply},
]))


def _enter_fails_once(ctx):
    calls["enter_fails_once"] += 1
    if calls["enter_fails_once"] == 1:
        raise RuntimeError("B could not start")
    return ctx


register("fails_entering_b", StateFlow([
    {"name": "A", "on_state": _set_output(lambda ctx: "from A")},
    {"name": "B", "on_enter": _enter_fails_once, "on_state": _set_output(lambda ctx: ctx.input() + ", then B")},
]))


async def _count_people(ctx):
    from django.contrib.auth.models import User

    ctx.output(await User.objects.filter(username__in=["alice", "bob"]).acount())
    return ctx


register("async_orm", StateFlow([{"name": "Count", "on_state": _count_people}]))


def _deep(levels):
    value = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def _cyclic():
    value = []
    value.append(value)
    return value


# What a handler can do that the engine must turn into a visible failure (or accept).
MISBEHAVIOURS = {
    "bigint_output": lambda ctx: ctx.output(10**5000),
    "deep_data": lambda ctx: ctx.set("deep", _deep(300)),
    "cyclic_output": lambda ctx: ctx.output(_cyclic()),
    "long_wait_id": lambda ctx: ctx.wait_for(["w" * 101]),
    "long_user": lambda ctx: ctx.escalate("u" * 151, "May I?"),
    "inf_timeout": lambda ctx: ctx.wait_for(["w"], timeout=float("inf")),
    "nan_timeout": lambda ctx: ctx.wait_for(["w"], timeout=float("nan")),
    "huge_timeout": lambda ctx: ctx.wait_for(["w"], timeout=1e300),
    "progress_int_message": lambda ctx: (ctx.progress(0.5, 123), ctx.output("ok")),
    "nul_output": lambda ctx: ctx.output("a\x00b"),
}


def _misbehave(ctx):
    what = ctx.input()
    if what == "die" and os.environ.get("ENVOY_TEST_LET_WORKERS_DIE") == "1":
        os.kill(os.getpid(), signal.SIGKILL)  # a worker that dies inside this transition, every time
    MISBEHAVIOURS.get(what, lambda ctx: ctx.output("ok"))(ctx)
    return ctx


register("misbehave", StateFlow([{"name": "Misbehave", "on_state": _misbehave}]))



# Concurrency limits: at most two active jobs per customer (they block on "go" to stay active),
# and a flow limited to one active job as a whole.
register("per_customer", StateFlow([
    {"name": "Await", "on_state": _await_go},
    {"name": "Went", "on_state": _went},
]), max_active=2, concurrency_key="customer")
register("one_at_a_time", StateFlow([
    {"name": "Await", "on_state": _await_go},
    {"name": "Went", "on_state": _went},
]), max_active=1)


def _brief_work(ctx):
    time.sleep(0.05)
    ctx.output(ctx.state())
    return ctx


# Ends on its own after a little work: the real-process test of max_active.
register("limited_work", StateFlow([
    {"name": "First", "on_state": _brief_work},
    {"name": "Second", "on_state": _brief_work},
]), max_active=1, concurrency_key="key")


def _call_limited_api(ctx):
    from envoy_django.ratelimits import acquire

    before = time.time()
    acquire("test-api")
    ctx.output([before, time.time()])  # the call got through at a moment between these two
    return ctx


# Takes each call from ENVOY["RATE_LIMITS"]["test-api"].
register("rate_limited", StateFlow([{"name": "Call", "on_state": _call_limited_api}]))


def _finish_as(version):
    def finish(ctx):
        ctx.output(f"{version}: {ctx.result('go')['value']}")
        return ctx

    return finish


# Two versions of one flow. Worker processes register those in ENVOY_TEST_VERSIONS ("1,2" by
# default), so a test can run old and new workers side by side, as a rolling deploy does.
_VERSIONED = {
    1: StateFlow([{"name": "Wait", "on_state": _await_go}, {"name": "Finish", "on_state": _finish_as("v1")}]),
    2: StateFlow([{"name": "Await", "on_state": _await_go}, {"name": "Finish", "on_state": _finish_as("v2")}]),
}
for _version in os.environ.get("ENVOY_TEST_VERSIONS", "1,2").split(","):
    register("versioned", _VERSIONED[int(_version)], version=int(_version))


from tests.testapp import agent_flows  # noqa: E402,F401
