"""Tool definitions for agents: checked once, when the agent is built.

A tool is a dict ``{"name", "description", "parameters", "handler",
"requires_approval", "approver"}``. Mistakes in it are caught here, at
construction (like a flow's states), so a bad tool never reaches a worker.

A handler takes the arguments (``handler(args)``, as in the original
Envoy's ``async ({a, b}) => a + b``) or the arguments and the context
(``handler(args, ctx)``), and may be ``def`` or ``async def``: decided once,
from its signature, here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from envoy_django.exceptions import FlowDefinitionError

# handler(args) or handler(args, ctx), def or async def: see _with_calling_convention.
ToolHandler = Callable[..., Any]

TOOL_KEYS = {"name", "description", "parameters", "handler", "requires_approval", "approver"}
SHORT_TYPES = ("string", "number", "integer", "boolean", "object", "array")
# What OpenAI (and most vendors) accept as a function name.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler
    requires_approval: bool = False
    approver: str | None = None
    # Whether the handler takes the context too, and whether it is a coroutine
    # function: both read from its signature when the tool is checked.
    takes_context: bool = field(default=True, compare=False)
    is_async: bool = field(default=False, compare=False)

    def call(self, arguments: dict[str, Any], ctx: Any) -> Any:
        """Call the handler the way it is written; an async handler returns its coroutine."""
        return self.handler(arguments, ctx) if self.takes_context else self.handler(arguments)

    def spec(self) -> dict[str, Any]:
        """What the model is shown: name, description and JSON Schema."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def parameters_schema(parameters: Any, where: str = "tool") -> dict[str, Any]:
    """Turn ``parameters`` into a JSON Schema object.

    A full schema (``{"type": "object", ...}`` or one with ``properties``) is
    kept as is. The short form ``{"a": "number", "b": "number"}`` names each
    argument's type; every argument is required, and a value may also be a
    full property schema (``{"a": {"type": "number", "description": ...}}``).
    """
    if parameters is None:
        return {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise FlowDefinitionError(f"{where}: parameters must be a dict (JSON Schema or {{'arg': 'type'}})")
    if parameters.get("type") == "object" or isinstance(parameters.get("properties"), dict):
        return parameters
    properties: dict[str, Any] = {}
    for arg, kind in parameters.items():
        if isinstance(kind, dict):
            properties[arg] = kind
        elif kind in SHORT_TYPES:
            properties[arg] = {"type": kind}
        else:
            raise FlowDefinitionError(
                f"{where}: parameter {arg!r} has type {kind!r}; use one of {', '.join(SHORT_TYPES)} "
                "or a JSON Schema dict"
            )
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def normalize_tools(tools: Any, default_approver: str | None) -> dict[str, Tool]:
    """Check tool dicts and return them by name."""
    if tools is None:
        return {}
    if isinstance(tools, dict) or not hasattr(tools, "__iter__"):
        raise FlowDefinitionError("tools must be a list of tool dicts")
    by_name: dict[str, Tool] = {}
    for index, spec in enumerate(tools):
        if isinstance(spec, Tool):
            tool = _with_calling_convention(spec)
            if tool.requires_approval and not tool.approver:
                if not default_approver:
                    raise FlowDefinitionError(f"tool {tool.name!r} requires approval but names no approver")
                tool = replace(tool, approver=default_approver)
        else:
            tool = _normalize_tool(spec, index, default_approver)
        if tool.name in by_name:
            raise FlowDefinitionError(f"two tools are named {tool.name!r}")
        by_name[tool.name] = tool
    return by_name


def _normalize_tool(spec: Any, index: int, default_approver: str | None) -> Tool:
    if not isinstance(spec, dict):
        raise FlowDefinitionError(f"tool {index} must be a dict, got {type(spec).__name__}")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise FlowDefinitionError(f"tool {index} needs a 'name' of 1-64 letters, digits, '_' or '-', got {name!r}")
    where = f"tool {name!r}"
    unknown = set(spec) - TOOL_KEYS
    if unknown:
        raise FlowDefinitionError(f"{where} has unknown keys {sorted(unknown)} (allowed: {sorted(TOOL_KEYS)})")
    handler = spec.get("handler")
    if not callable(handler):
        raise FlowDefinitionError(f"{where} needs a callable 'handler(args)' or 'handler(args, ctx)'")
    requires_approval = bool(spec.get("requires_approval", False))
    approver = spec.get("approver") or default_approver
    if requires_approval and (not isinstance(approver, str) or not approver):
        raise FlowDefinitionError(
            f"{where} requires approval but names no approver; give the tool an 'approver' username "
            "or the agent an approver="
        )
    return _with_calling_convention(Tool(
        name=name,
        description=str(spec.get("description") or ""),
        parameters=parameters_schema(spec.get("parameters"), where),
        handler=handler,
        requires_approval=requires_approval,
        approver=approver if requires_approval else None,
    ))


def _with_calling_convention(tool: Tool) -> Tool:
    """``tool`` knowing whether its handler takes ``(args)`` or ``(args, ctx)``, and whether it is async."""
    handler = tool.handler
    # A callable object is async when its __call__ is.
    call = handler if inspect.isfunction(handler) or inspect.ismethod(handler) else type(handler).__call__
    is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: hand it the arguments only
        return replace(tool, takes_context=False, is_async=is_async)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    if not varargs and not positional:
        raise FlowDefinitionError(
            f"tool {tool.name!r}: handler must take the arguments: handler(args) or handler(args, ctx)"
        )
    takes_context = varargs or len(positional) >= 2
    return replace(tool, takes_context=takes_context, is_async=is_async)
