"""ToolAgents registered as durable flows, for tests/agents.

They are registered once, at import, like any project's agents; what
changes per test is where their model lives. ``endpoint`` is their
provider: an ``OpenAIProvider`` aimed at a ``ScriptedOpenAIServer`` the
test started - in the test process via ``endpoint.point_at(url)``, in
``envoy_worker`` processes via the ``ENVOY_TEST_OPENAI_BASE_URL`` variable.
With neither it fails permanently rather than reach a real API.

Every tool run is appended to ``tool_runs`` and, when
``ENVOY_TEST_AGENT_DIR`` is set (worker processes), to
``$ENVOY_TEST_AGENT_DIR/tool_runs.jsonl``, so a test can count runs across
processes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from envoy_django import register
from envoy_django.agents import ToolAgent
from envoy_django.llm import LlmPermanentError, LlmResponse, OpenAIProvider

BASE_URL_ENV = "ENVOY_TEST_OPENAI_BASE_URL"
AGENT_DIR_ENV = "ENVOY_TEST_AGENT_DIR"
TOOL_LOG = "tool_runs.jsonl"
# Files in $ENVOY_TEST_AGENT_DIR that drive pause_before_model_call().
HOLD, RELEASE = "hold", "release"

tool_runs: list[dict[str, Any]] = []


class ScriptedEndpoint:
    """The test agents' ``LlmProvider``: a swappable ``OpenAIProvider`` on a local scripted server."""

    def __init__(self) -> None:
        self._provider: OpenAIProvider | None = None
        self._lock = threading.Lock()

    def point_at(self, base_url: str, *, max_retries: int = 0) -> None:
        new = OpenAIProvider(api_key="test-key", base_url=base_url, model="scripted-model",
                             max_retries=max_retries, timeout=60)
        with self._lock:
            old, self._provider = self._provider, new
        if old is not None:
            old.close()

    def reset(self) -> None:
        with self._lock:
            old, self._provider = self._provider, None
        if old is not None:
            old.close()

    def _current(self) -> OpenAIProvider:
        if self._provider is None:
            url = os.environ.get(BASE_URL_ENV)
            if not url:
                raise LlmPermanentError(
                    f"no scripted OpenAI server for the test agents: call endpoint.point_at() or set {BASE_URL_ENV}"
                )
            self.point_at(url)
        assert self._provider is not None
        return self._provider

    def generate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                 **options: Any) -> LlmResponse:
        return self._current().generate(messages, tools=tools, **options)


endpoint = ScriptedEndpoint()


def _record(tool: str, args: dict[str, Any]) -> None:
    run = {"tool": tool, "args": args, "pid": os.getpid()}
    tool_runs.append(run)
    directory = os.environ.get(AGENT_DIR_ENV)
    if directory:
        with open(Path(directory) / TOOL_LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(run) + "\n")


def _add(args: dict[str, Any], ctx: Any) -> Any:
    _record("add", args)
    return args["a"] + args["b"]


def _transfer(args: dict[str, Any], ctx: Any) -> Any:
    _record("transfer", args)
    return {"ok": True, "sent": args["amount"], "to": args["to"]}


def _close_account(args: dict[str, Any], ctx: Any) -> str:
    _record("close_account", args)
    return f"account {args['account']} closed"


TOOLS = [
    {"name": "add", "description": "Add two numbers.", "parameters": {"a": "number", "b": "number"},
     "handler": _add},
    {"name": "transfer", "description": "Send money to someone.",
     "parameters": {"to": "string", "amount": "number"}, "handler": _transfer,
     "requires_approval": True, "approver": "alice"},
    # No approver of its own: the agent's (approver="ops") is asked.
    {"name": "close_account", "description": "Close a customer's account.",
     "parameters": {"account": "string"}, "handler": _close_account, "requires_approval": True},
]

register("assistant", ToolAgent(endpoint, tools=TOOLS, approver="ops", max_steps=10))
# Every model call takes from ENVOY["RATE_LIMITS"]["test-api"].
register("limited_assistant", ToolAgent(endpoint, tools=TOOLS, approver="ops", max_steps=10, rate_limit="test-api"))


# The original Envoy README's agent, ported as its users write it: async
# tools that take the arguments only. Plus a tool that fails, and one that
# reads the database through the async ORM.


async def _add_async(args: dict[str, Any]) -> Any:
    _record("add", args)
    return args["a"] + args["b"]


async def _echo(args: dict[str, Any]) -> Any:
    _record("echo", args)
    return args["text"]


def _divide(args: dict[str, Any]) -> Any:
    _record("divide", args)
    return args["a"] / args["b"]


async def _count_users(args: dict[str, Any]) -> Any:
    from django.contrib.auth.models import User

    _record("count_users", args)
    return await User.objects.filter(username__startswith=args["prefix"]).acount()


PORTED_TOOLS = [
    {"name": "add", "description": "Add two numbers", "parameters": {"a": "number", "b": "number"},
     "handler": _add_async},
    {"name": "echo", "description": "Echo a string", "parameters": {"text": "string"}, "handler": _echo},
    {"name": "divide", "description": "Divide a by b", "parameters": {"a": "number", "b": "number"},
     "handler": _divide},
    {"name": "count_users", "description": "Count users whose name starts with prefix",
     "parameters": {"prefix": "string"}, "handler": _count_users},
]

register("ported_assistant", ToolAgent(endpoint, tools=PORTED_TOOLS, max_model_calls=3))


def pause_before_model_call(ctx: Any, state: str) -> Any:
    """A plugin for crash tests: park the worker between a committed ToolCall and the next model call.

    Inert unless ``$ENVOY_TEST_AGENT_DIR/hold`` exists. Then, on entering
    ``Plan`` after the first step (so after some ToolCall committed), it
    writes ``paused-<pid>`` and polls until ``release`` exists; the test
    SIGKILLs the worker while it polls. The phase is pure (it only reads
    files), so running it again on the next worker changes nothing.
    """
    directory = os.environ.get(AGENT_DIR_ENV)
    if state != "Plan" or ctx.step() == 1 or not directory or not (Path(directory) / HOLD).exists():
        return ctx
    (Path(directory) / f"paused-{os.getpid()}").write_text(str(ctx.step()))
    deadline = time.monotonic() + 120
    while not (Path(directory) / RELEASE).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("pause_before_model_call: never released")
        time.sleep(0.02)
    return ctx


register("assistant_crash", ToolAgent(
    endpoint,
    tools=[TOOLS[0]],
    max_steps=10,
    plugins=[{"name": "pause_before_model_call", "on_enter": pause_before_model_call}],
))
