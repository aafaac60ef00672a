"""States, routers and plugins: turning the user's dicts into checked objects.

Everything that can be wrong with a flow's shape is caught here, at
construction, so that a bad flow never reaches a worker.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Required, TypedDict

from envoy_django.exceptions import FlowDefinitionError
from envoy_django.flow.context import MAX_NAME

Handler = Callable[..., Any]



# What a user writes, as TypedDicts: a type checker catches a typo such as
# ``on_stat`` or a camelCase ``onEnter`` in a dict literal; at run time the
# same keys are checked below, with a hint.


class RouteSpec(TypedDict, total=False):
    description: str
    map: Handler


class RouterSpec(TypedDict, total=False):
    """``{"next": name or None, "map": fn}`` (static) or ``{"routes": {...}, "on_route": fn}`` (dynamic)."""

    next: str | None
    map: Handler
    routes: dict[str, RouteSpec | Handler | str | None]
    on_route: Handler


class StateSpec(TypedDict, total=False):
    name: Required[str]
    on_state: Required[Handler]
    on_enter: Handler | None
    on_exit: Handler | None
    router: RouterSpec | Router | None


class PluginSpec(TypedDict, total=False):
    name: Required[str]
    depends_on: list[str] | tuple[str, ...] | str
    on_enter: Handler | None
    on_exit: Handler | None
    on_route: Handler | None


STATE_KEYS = set(StateSpec.__annotations__)
ROUTER_KEYS = set(RouterSpec.__annotations__)
PLUGIN_KEYS = set(PluginSpec.__annotations__)


@dataclass(frozen=True)
class Route:
    target: str
    description: str | None = None
    map: Handler | None = None


@dataclass(frozen=True)
class Router:
    """How a state picks its successor.

    ``kind`` is ``static`` (a fixed ``next``), ``dynamic`` (``on_route``
    chooses among ``routes``) or ``default`` (no router: the next state in
    list order, or the end after the last).
    """

    kind: str
    next: str | None = None
    map: Handler | None = None
    routes: dict[str, Route] = field(default_factory=dict)
    on_route: Handler | None = None


@dataclass(frozen=True)
class State:
    """A state as a user may write it: the router as a ``Router``, a dict, or None (the next state)."""

    name: str
    on_state: Handler
    on_enter: Handler | None = None
    on_exit: Handler | None = None
    router: Router | dict[str, Any] | None = None


@dataclass(frozen=True)
class StateDef:
    """A state as the engine holds it, checked: its router is always a ``Router``."""

    name: str
    on_state: Handler
    on_enter: Handler | None
    on_exit: Handler | None
    router: Router


@dataclass(frozen=True)
class Plugin:
    name: str
    depends_on: tuple[str, ...] = ()
    on_enter: Handler | None = None
    on_exit: Handler | None = None
    on_route: Handler | None = None


def _callable(value: Any, what: str) -> Handler | None:
    if value is None:
        return None
    if not callable(value):
        raise FlowDefinitionError(f"{what} must be callable, got {type(value).__name__}")
    return value


def _as_mapper(fn: Handler | None, what: str) -> Handler | None:
    """Accept ``map`` taking ``(output)`` or ``(output, ctx)``, like the original's ``o => o``."""
    fn = _callable(fn, what)
    if fn is None:
        return None
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        # Builtin types such as str or int expose no signature: a one-value conversion.
        return lambda output, ctx: fn(output)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    if len(positional) == 1 and not varargs:
        return lambda output, ctx: fn(output)
    return fn


def normalize_state(spec: State | StateSpec | dict[str, Any], index: int) -> StateDef:
    if isinstance(spec, State):
        spec = {"name": spec.name, "on_state": spec.on_state, "on_enter": spec.on_enter,
                "on_exit": spec.on_exit, "router": spec.router}
    if not isinstance(spec, dict):
        raise FlowDefinitionError(f"state {index} must be a dict or State, got {type(spec).__name__}")
    name = spec.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise FlowDefinitionError(
            f"state {index} needs a 'name': a non-empty string of at most {MAX_NAME} characters")
    _refuse_unknown_keys(spec, STATE_KEYS, f"state {name!r}")
    on_state = _callable(spec.get("on_state"), f"on_state of state {name!r}")
    if on_state is None:
        raise FlowDefinitionError(f"state {name!r} has no on_state handler")
    return StateDef(
        name=name,
        on_state=on_state,
        on_enter=_callable(spec.get("on_enter"), f"on_enter of state {name!r}"),
        on_exit=_callable(spec.get("on_exit"), f"on_exit of state {name!r}"),
        router=normalize_router(spec.get("router"), name),
    )


def _refuse_unknown_keys(spec: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Refuse a key the engine would ignore; point a camelCase key from the original at its snake_case name."""
    for key in spec:
        if key in allowed:
            continue
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", str(key)).lower()
        hint = f"; did you mean {snake!r}?" if snake in allowed else f" (allowed: {', '.join(sorted(allowed))})"
        raise FlowDefinitionError(f"{where} has unknown key {key!r}{hint}")


def normalize_router(spec: Router | RouterSpec | dict[str, Any] | None, state: str) -> Router:
    if spec is None:
        return Router(kind="default")
    if isinstance(spec, Router):
        # Rebuild it from its fields so that it is checked and its maps wrapped like a dict's.
        if spec.kind == "default":
            return spec
        if spec.kind == "static":
            spec = {"next": spec.next, "map": spec.map}
        elif spec.kind == "dynamic":
            spec = {"routes": spec.routes, "on_route": spec.on_route}
        else:
            raise FlowDefinitionError(f"router of state {state!r} has unknown kind {spec.kind!r}")
    if not isinstance(spec, dict):
        raise FlowDefinitionError(f"router of state {state!r} must be a dict")
    _refuse_unknown_keys(spec, ROUTER_KEYS, f"router of state {state!r}")
    dynamic = "routes" in spec or "on_route" in spec
    if dynamic and "next" in spec:
        raise FlowDefinitionError(f"router of state {state!r} has both 'next' and 'routes'/'on_route'")
    if not dynamic:
        if "next" not in spec:
            raise FlowDefinitionError(f"router of state {state!r} needs 'next' or 'on_route'")
        nxt = spec["next"]
        if nxt is not None and not isinstance(nxt, str):
            raise FlowDefinitionError(f"router of state {state!r}: 'next' must be a state name or None")
        return Router(kind="static", next=nxt, map=_as_mapper(spec.get("map"), f"map of state {state!r}"))
    on_route = _callable(spec.get("on_route"), f"on_route of state {state!r}")
    if on_route is None:
        raise FlowDefinitionError(f"router of state {state!r} has routes but no on_route")
    raw_routes = spec.get("routes") or {}
    if not isinstance(raw_routes, dict):
        raise FlowDefinitionError(f"routes of state {state!r} must be a dict of state name to route")
    routes = {}
    for target, value in raw_routes.items():
        where = f"route {target!r} of state {state!r}"
        if isinstance(value, Route):
            routes[target] = Route(target, value.description, _as_mapper(value.map, where))
        elif callable(value):
            routes[target] = Route(target, None, _as_mapper(value, where))
        elif value is None or isinstance(value, str):
            routes[target] = Route(target, value, None)
        elif isinstance(value, dict):
            extra = set(value) - {"description", "map"}
            if extra:
                raise FlowDefinitionError(f"{where} has unknown keys {sorted(extra)}")
            routes[target] = Route(target, value.get("description"), _as_mapper(value.get("map"), where))
        else:
            raise FlowDefinitionError(f"{where} must be a dict, a map function or a description")
    return Router(kind="dynamic", routes=routes, on_route=on_route)


def normalize_plugin(spec: Plugin | PluginSpec | dict[str, Any] | Any, index: int) -> Plugin:
    get = spec.get if isinstance(spec, dict) else lambda key, default=None: getattr(spec, key, default)
    name = get("name")
    if not isinstance(name, str) or not name:
        raise FlowDefinitionError(f"plugin {index} needs a non-empty string 'name'")
    if isinstance(spec, dict):
        _refuse_unknown_keys(spec, PLUGIN_KEYS, f"plugin {name!r}")
    depends = get("depends_on") or ()
    if isinstance(depends, str):
        depends = (depends,)
    if not isinstance(depends, (list, tuple)) or not all(isinstance(dep, str) for dep in depends):
        raise FlowDefinitionError(f"plugin {name!r}: depends_on must be plugin names, got {depends!r}")
    return Plugin(
        name=name,
        depends_on=tuple(depends),
        on_enter=_callable(get("on_enter"), f"on_enter of plugin {name!r}"),
        on_exit=_callable(get("on_exit"), f"on_exit of plugin {name!r}"),
        on_route=_callable(get("on_route"), f"on_route of plugin {name!r}"),
    )


def order_plugins(plugins: list[Plugin]) -> list[Plugin]:
    """Dependencies first, otherwise in the order given."""
    by_name: dict[str, Plugin] = {}
    for plugin in plugins:
        if plugin.name in by_name:
            raise FlowDefinitionError(f"two plugins are named {plugin.name!r}")
        by_name[plugin.name] = plugin
    for plugin in plugins:
        for dep in plugin.depends_on:
            if dep not in by_name:
                raise FlowDefinitionError(
                    f"plugin {plugin.name!r} depends on {dep!r}, which is not among the flow's plugins"
                )
    ordered: list[Plugin] = []
    placed: set[str] = set()
    visiting: list[str] = []

    def visit(plugin: Plugin) -> None:
        if plugin.name in placed:
            return
        if plugin.name in visiting:
            cycle = visiting[visiting.index(plugin.name):] + [plugin.name]
            raise FlowDefinitionError(f"plugin dependency cycle: {' -> '.join(cycle)}")
        visiting.append(plugin.name)
        for dep in plugin.depends_on:
            visit(by_name[dep])
        visiting.pop()
        placed.add(plugin.name)
        ordered.append(plugin)

    for plugin in plugins:
        visit(plugin)
    return ordered
