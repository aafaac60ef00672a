"""StateFlow: a state machine of named states that advances one phase at a time.

The stepping logic is written once, as a generator that yields the handler
calls it needs; a synchronous and an asynchronous driver run those calls.
Synchronous handlers therefore run outside any event loop (so Django ORM
calls in them work), and ``async def`` handlers are awaited.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

from envoy_django.exceptions import (
    EnvoyError,
    FlowDefinitionError,
    FlowError,
    HandlerError,
    RateLimitedError,
    WaitInRunError,
)
from envoy_django.flow.context import Context, ensure_json
from envoy_django.flow.definition import (
    Handler,
    Plugin,
    PluginSpec,
    State,
    StateDef,
    StateSpec,
    normalize_plugin,
    normalize_state,
    order_plugins,
)
from envoy_django.flow.graph import flow_graph, graph_to_mermaid
from envoy_django.flow.results import Phase, StepResult, new_wait

_NEXT_PHASE = {"enter": "state", "state": "exit", "exit": "route"}


@dataclass(frozen=True)
class _Call:
    fn: Handler
    args: tuple
    state: str
    handler: str

    @property
    def phase(self) -> str:
        """The phase this call belongs to, read from the handler's name."""
        for phase in ("enter", "state", "exit"):
            if self.handler == f"on_{phase}" or self.handler.endswith(f" on_{phase}"):
                return phase
        return "route"  # on_route, a plugin's on_route, a route's map


_Stepper = Generator[_Call, Any, StepResult]
_PhaseRun = Generator[_Call, Any, Context]


class StateFlow:
    """A workflow: named states with handlers and routers.

    ``run()`` executes it in-process; ``register()`` plus
    ``scheduler.schedule()`` runs it as a durable job that checkpoints each
    phase.
    """

    def __init__(
        self,
        states: Iterable[State | StateSpec],
        *,
        start_state: str | None = None,
        plugins: Iterable[Plugin | PluginSpec] = (),
        max_steps: int = 25,
    ) -> None:
        state_list = [normalize_state(spec, index) for index, spec in enumerate(states)]
        if not state_list:
            raise FlowDefinitionError("a flow needs at least one state")
        self.states: dict[str, StateDef] = {}
        for state in state_list:
            if state.name in self.states:
                raise FlowDefinitionError(f"two states are named {state.name!r}")
            self.states[state.name] = state
        self._order = [s.name for s in state_list]
        self.start_state = start_state if start_state is not None else self._order[0]
        if self.start_state not in self.states:
            raise FlowDefinitionError(f"start_state {self.start_state!r} is not a state of this flow")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise FlowDefinitionError(f"max_steps must be a positive integer, got {max_steps!r}")
        self.max_steps = max_steps
        self.plugins: list[Plugin] = order_plugins([normalize_plugin(p, i) for i, p in enumerate(plugins)])
        self._check_targets()

    def _check_targets(self) -> None:
        for state in self.states.values():
            router = state.router
            targets = [router.next] if router.kind == "static" else list(router.routes)
            for target in targets:
                if target is not None and target not in self.states:
                    raise FlowDefinitionError(
                        f"router of state {state.name!r} names {target!r}, which is not a state of this flow"
                    )

    # --- running -----------------------------------------------------------

    def initial_context(self, input: Any = None) -> Context:
        ensure_json(input, "input", f"input of flow starting at {self.start_state!r}")
        return Context(self.start_state, input)

    def step(self, ctx: Context) -> Context:
        """Run the next phase that has work (and the empty ones around it); the context to go on with."""
        return self.advance(ctx).context

    async def astep(self, ctx: Context) -> Context:
        return (await self.aadvance(ctx)).context

    def advance(self, ctx: Context) -> StepResult:
        """``step()``, saying where the work ran and which waits it raised: what a durable runner records."""
        return _drive_sync(self._step(ctx))

    async def aadvance(self, ctx: Context) -> StepResult:
        return await _drive_async(self._step(ctx))

    def run(self, input: Any = None) -> Context:
        """Run to the end in this process and return the final context."""
        ctx = self.initial_context(input)
        while not ctx.done():
            ctx = self.step(ctx)
            self._refuse_waits(ctx)
        return ctx

    async def arun(self, input: Any = None) -> Context:
        ctx = self.initial_context(input)
        while not ctx.done():
            ctx = await self.astep(ctx)
            self._refuse_waits(ctx)
        return ctx

    @staticmethod
    def _refuse_waits(ctx: Context) -> None:
        if ctx.waiting() and not ctx.done():
            raise WaitInRunError(
                f"state {ctx.state()!r} waits for {', '.join(ctx.waiting())}: spawn, wait_for and "
                "escalate need a durable job; register the flow and use scheduler.schedule() instead of run()"
            )

    # --- the stepping logic ------------------------------------------------

    def _is_empty(self, state: StateDef, phase: str) -> bool:
        """A phase with no handler to run costs nothing and needs no checkpoint."""
        if phase == "enter":
            return state.on_enter is None and not any(p.on_enter for p in self.plugins)
        if phase == "exit":
            return state.on_exit is None and not any(p.on_exit for p in self.plugins)
        if phase == "route":
            return state.router.kind != "dynamic" and not any(p.on_route for p in self.plugins)
        return False

    def _step(self, ctx: Context) -> _Stepper:
        if ctx.done():
            raise FlowError(f"the flow already ended ({ctx.done()}) in state {ctx.state()!r}")
        if ctx.waiting():
            raise FlowError(f"state {ctx.state()!r} still waits for {', '.join(ctx.waiting())}")
        if ctx.state() not in self.states:
            raise FlowError(f"the context is in state {ctx.state()!r}, which this flow does not have")
        before = ctx
        ctx = ctx.copy()
        ctx._s["notes"] = []
        worked: tuple[str, Phase, int] | None = None
        while True:
            state = self.states[ctx.state()]
            phase = ctx.phase()
            empty = self._is_empty(state, phase)
            if worked and not empty:
                break
            if not empty:
                worked = (state.name, phase, ctx.step())
            ctx = yield from self._run_phase(ctx, state, phase)
            if ctx.done() or ctx.waiting():
                break
        where = worked or (state.name, phase, ctx.step())
        raised = [w for w in ctx._s["waits"].values() if w["status"] == "pending" and w["id"] not in before.waiting()]
        return StepResult(ctx, *where, new_waits=tuple(new_wait(spec) for spec in raised))

    @staticmethod
    def _invoke(call: _Call) -> Generator[_Call, Any, Any]:
        """Yield one call to the driver; label what it raises with state and handler."""
        try:
            return (yield call)
        except (HandlerError, FlowError):
            raise
        except Exception as exc:
            if isinstance(exc, EnvoyError) and not isinstance(exc, RateLimitedError):
                # ctx misuse (bad wait, unknown escalation input type...) is a
                # bug in the flow, not a passing failure: no retry. A rate
                # limit is passing: the scheduler waits it out.
                raise FlowError(f"{call.handler} of state {call.state!r}: {exc}") from exc
            ctx = next((arg for arg in call.args if isinstance(arg, Context)), None)
            raise HandlerError(
                call.state, call.handler, exc, call.phase,
                step=ctx.step() if ctx else None, input=ctx.input() if ctx else None,
            ) from exc

    def _call(self, ctx: Context, fn: Handler, args: tuple, state: str, handler: str) -> _PhaseRun:
        """Run a handler and check that it handed back a context."""
        result = yield from self._invoke(_Call(fn, args, state, handler))
        if handler.startswith("plugin ") and result is None:
            return ctx
        if not isinstance(result, Context):
            raise FlowError(
                f"{handler} of state {state!r} returned {type(result).__name__}; "
                "a handler must return the context (return ctx)"
            )
        return result

    def _checked(self, ctx: Context, state: str, handler: str) -> Context:
        where = f"{handler} of state {state!r}"
        ensure_json(ctx.output(), "output", where)
        ensure_json(ctx._s["data"], "", where + " set data key")
        ensure_json([w["params"] for w in ctx._s["waits"].values()], "waits", where)
        ensure_json(ctx._s["notes"], "notes", where)
        return ctx

    def _run_phase(self, ctx: Context, state: StateDef, phase: str) -> _PhaseRun:
        name = state.name
        if phase == "enter":
            for plugin in self.plugins:
                if plugin.on_enter:
                    ctx = yield from self._call(
                        ctx, plugin.on_enter, (ctx, name), name, f"plugin {plugin.name!r} on_enter")
            if state.on_enter:
                ctx = yield from self._call(ctx, state.on_enter, (ctx,), name, "on_enter")
        elif phase == "state":
            ctx = yield from self._call(ctx, state.on_state, (ctx,), name, "on_state")
        elif phase == "exit":
            if state.on_exit:
                ctx = yield from self._call(ctx, state.on_exit, (ctx,), name, "on_exit")
            for plugin in self.plugins:
                if plugin.on_exit:
                    ctx = yield from self._call(
                        ctx, plugin.on_exit, (ctx, name), name, f"plugin {plugin.name!r} on_exit")
        else:
            return (yield from self._route(ctx, state))
        self._checked(ctx, name, phase if phase != "state" else "on_state")
        if ctx.state() != name:
            raise FlowError(f"a handler of state {name!r} changed the context's state; route with a router instead")
        if not ctx.done():
            ctx._s["phase"] = _NEXT_PHASE[phase]
        return ctx

    def _route(self, ctx: Context, state: StateDef) -> _PhaseRun:
        name = state.name
        router = state.router
        mapper = None
        if router.kind == "static":
            target, mapper = router.next, router.map
        elif router.on_route is None:  # the default router: the next state in list order
            index = self._order.index(name)
            target = self._order[index + 1] if index + 1 < len(self._order) else None
        else:
            target = yield from self._invoke(_Call(router.on_route, (ctx,), name, "on_route"))
            if target is not None and target not in router.routes:
                choices = ", ".join(router.routes) or "none"
                raise FlowError(
                    f"on_route of state {name!r} chose {target!r}, which is not one of its routes ({choices})"
                )
            if target is not None:
                mapper = router.routes[target].map
        for plugin in self.plugins:
            if plugin.on_route:
                target = yield from self._invoke(
                    _Call(plugin.on_route, (ctx, target), name, f"plugin {plugin.name!r} on_route")
                )
                if target is not None and target not in self.states:
                    raise FlowError(
                        f"plugin {plugin.name!r} on_route in state {name!r} chose {target!r}, "
                        "which is not a state of this flow"
                    )
        # on_route sees the context too: refuse non-JSON before it is carried on.
        self._checked(ctx, name, "on_route")
        if ctx.done():
            return ctx
        if target is None:
            ctx._s["done"] = "finished"
            return ctx
        if ctx.step() >= self.max_steps:
            ctx._s["done"] = "max_steps"
            ctx._s["error"] = (
                f"max_steps ({self.max_steps}) reached: state {name!r} routed to {target!r} at step {ctx.step()}"
            )
            return ctx
        next_input = ctx.output()
        if mapper is not None:
            next_input = yield from self._invoke(_Call(mapper, (ctx.output(), ctx), name, f"map to {target!r}"))
            ensure_json(next_input, "input", f"map from state {name!r} to {target!r}")
        data = ctx._s["data"]
        for key in [k for k in data if k.startswith("$")]:
            del data[key]
        ctx._s.update(state=target, phase="enter", step=ctx.step() + 1, input=next_input)
        return ctx

    # --- pictures ----------------------------------------------------------

    def graph(self) -> dict:
        """States and edges (``dynamic`` marks routes chosen by on_route)."""
        return flow_graph(self)

    def to_mermaid(self) -> str:
        return graph_to_mermaid(self.graph())


def _drive_sync(gen: _Stepper) -> StepResult:
    try:
        call = gen.send(None)
        while True:
            try:
                result = call.fn(*call.args)
                if inspect.isawaitable(result):
                    result = _await_outside_loop(result, call)
            except Exception as exc:
                call = gen.throw(exc)
            else:
                call = gen.send(result)
    except StopIteration as stop:
        return stop.value


async def _drive_async(gen: _Stepper) -> StepResult:
    try:
        call = gen.send(None)
        while True:
            try:
                result = call.fn(*call.args)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                call = gen.throw(exc)
            else:
                call = gen.send(result)
    except StopIteration as stop:
        return stop.value


def _await_outside_loop(awaitable: Any, call: _Call) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise FlowError(
            f"{call.handler} of state {call.state!r} is async and the flow was run with step()/run() "
            "inside an event loop; use await flow.astep()/flow.arun()"
        )

    async def wait() -> Any:
        return await awaitable

    try:
        # Django's own bridge: an async handler may use the async ORM, whose
        # sync_to_async calls come back to this thread, even when this code
        # itself runs under sync_to_async (an async view calling aschedule).
        from asgiref.sync import async_to_sync
    except ImportError:  # the engine alone, without Django
        return asyncio.run(wait())
    return async_to_sync(wait)()
