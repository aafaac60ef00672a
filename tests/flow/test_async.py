"""async def handlers: arun/astep, and run() from synchronous code or inside a loop."""

from __future__ import annotations

import asyncio

import pytest

from envoy_django import StateFlow
from envoy_django.exceptions import FlowError, HandlerError, WaitInRunError


def async_flow(log):
    async def enter(ctx):
        await asyncio.sleep(0)
        log.append("enter")
        ctx.set("entered", True)
        return ctx

    async def work(ctx):
        await asyncio.sleep(0)
        log.append("state")
        ctx.output(ctx.input() * 2)
        return ctx

    async def exit_(ctx):
        log.append("exit")
        return ctx

    async def on_route(ctx):
        await asyncio.sleep(0)
        log.append("route")
        return "Big" if ctx.output() > 10 else "Small"

    async def mapper(output, ctx):
        log.append("map")
        return {"value": output}

    def sync_end(ctx):
        log.append("end")
        ctx.output(f"{ctx.state()}: {ctx.input()['value']}")
        return ctx

    async def plugin_enter(ctx, state):
        log.append(f"plugin enter {state}")

    return StateFlow(
        [
            {"name": "Work", "on_enter": enter, "on_state": work, "on_exit": exit_,
             "router": {"routes": {"Big": {"map": mapper}, "Small": {"map": mapper}}, "on_route": on_route}},
            {"name": "Big", "on_state": sync_end, "router": {"next": None}},
            {"name": "Small", "on_state": sync_end, "router": {"next": None}},
        ],
        plugins=[{"name": "p", "on_enter": plugin_enter}],
    )


EXPECTED_LOG = ["plugin enter Work", "enter", "state", "exit", "route", "map", "plugin enter Big", "end"]


def test_arun_awaits_every_kind_of_async_callable():
    log = []

    ctx = asyncio.run(async_flow(log).arun(21))

    assert ctx.output() == "Big: 42"
    assert ctx.get("entered") is True
    assert ctx.done() == "finished"
    assert log == EXPECTED_LOG


def test_run_outside_an_event_loop_runs_async_handlers_too():
    log = []

    ctx = async_flow(log).run(2)

    assert ctx.output() == "Small: 4"
    assert log == [entry.replace("Big", "Small") for entry in EXPECTED_LOG]


def test_astep_advances_one_phase_like_step():
    log_async, log_sync = [], []
    flow_async, flow_sync = async_flow(log_async), async_flow(log_sync)

    async def steps():
        ctx = flow_async.initial_context(21)
        contexts = []
        while not ctx.done():
            result = await flow_async.aadvance(ctx)
            ctx = result.context
            contexts.append((ctx.serialize(), (result.state, result.phase, result.step)))
        return contexts

    async_steps = asyncio.run(steps())
    ctx = flow_sync.initial_context(21)
    sync_steps = []
    while not ctx.done():
        result = flow_sync.advance(ctx)
        ctx = result.context
        sync_steps.append((ctx.serialize(), (result.state, result.phase, result.step)))

    assert async_steps == sync_steps
    assert [phase for _, phase in async_steps] == [
        ("Work", "enter", 1), ("Work", "state", 1), ("Work", "exit", 1), ("Work", "route", 1),
        ("Big", "enter", 2), ("Big", "state", 2),
    ]


def test_run_inside_a_running_loop_with_an_async_handler_says_to_use_arun():
    async def handler(ctx):
        return ctx

    flow = StateFlow([{"name": "A", "on_state": handler}])

    async def main():
        flow.run()

    with pytest.raises(FlowError) as excinfo:
        asyncio.run(main())

    message = str(excinfo.value)
    assert "arun" in message
    assert "'A'" in message
    assert not isinstance(excinfo.value, HandlerError)


def test_run_inside_a_running_loop_works_for_sync_handlers():
    def handler(ctx):
        ctx.output("sync ok")
        return ctx

    flow = StateFlow([{"name": "A", "on_state": handler}])

    async def main():
        return flow.run()

    assert asyncio.run(main()).output() == "sync ok"


def test_arun_runs_sync_handlers():
    def handler(ctx):
        ctx.output(ctx.input() + 1)
        return ctx

    assert asyncio.run(StateFlow([{"name": "A", "on_state": handler}]).arun(1)).output() == 2


def test_async_handler_exception_is_a_handler_error():
    async def boom(ctx):
        await asyncio.sleep(0)
        raise KeyError("missing")

    flow = StateFlow([{"name": "A", "on_state": boom}])

    with pytest.raises(HandlerError) as excinfo:
        asyncio.run(flow.arun())
    assert isinstance(excinfo.value.original, KeyError)
    assert excinfo.value.__cause__ is excinfo.value.original

    with pytest.raises(HandlerError):
        flow.run()


def test_async_handler_returning_none_is_refused():
    async def forgot(ctx):
        ctx.output(1)

    flow = StateFlow([{"name": "A", "on_state": forgot}])

    with pytest.raises(FlowError, match=r"on_state of state 'A' returned NoneType"):
        asyncio.run(flow.arun())


def test_arun_refuses_waits_like_run():
    async def wait(ctx):
        ctx.wait_for("event")
        return ctx

    with pytest.raises(WaitInRunError, match="schedule"):
        asyncio.run(StateFlow([{"name": "A", "on_state": wait}]).arun())


def test_async_handlers_can_run_concurrently_under_arun():
    events = []

    async def slow(ctx):
        events.append(("start", ctx.input()))
        await asyncio.sleep(0.01)
        events.append(("end", ctx.input()))
        ctx.output(ctx.input())
        return ctx

    flow = StateFlow([{"name": "A", "on_state": slow}])

    async def main():
        return await asyncio.gather(*(flow.arun(i) for i in range(5)))

    results = asyncio.run(main())

    assert [ctx.output() for ctx in results] == [0, 1, 2, 3, 4]
    # Every flow started before any finished: arun does not block the loop.
    assert sorted(events[:5]) == [("start", i) for i in range(5)]
