"""``ToolAgent``: a model that calls tools, written as an ordinary StateFlow.

The loop is two states, so that a durable job checkpoints between them::

    Plan ──(tool calls)──▶ ToolCall ──▶ Plan ... Plan ──(answer)──▶ end

``Plan`` makes exactly one model call; ``ToolCall`` runs one turn's batch of
tool calls. Because the scheduler saves the context after every phase, a
worker that dies after a tool ran resumes at the next model call (the tool
does not run again), and a resumed job never repeats a model call that was
already saved. The whole conversation lives in ``ctx`` data as JSON.

What a checkpoint cannot cover is the phase in flight: a model call cut off
by a crash (or failing with a retryable error) is made again, and a worker
that dies in the middle of a batch runs the whole batch again on the next
worker - so a tool with side effects should be idempotent, or the only call
in its turn. Approvals are asked in ``ToolCall``'s enter phase, which is
checkpointed (with the escalations) before any tool of the batch runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from envoy_django.agents.tools import Tool, normalize_tools
from envoy_django.exceptions import FlowDefinitionError, FlowError
from envoy_django.flow import Context, StateFlow
from envoy_django.llm.base import LlmProvider

PLAN = "Plan"
TOOL_CALL = "ToolCall"
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
# NUL, and surrogate code points: decoding joins real pairs into one character, so these are strays.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` with NUL characters and unpaired surrogates in its strings replaced by U+FFFD.

    Model replies and tool results are outside text (a tool may read a
    binary file); PostgreSQL's jsonb cannot hold those two, and one stray
    character must not make the checkpoint of the whole conversation fail.
    """
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    return value


class ToolAgent(StateFlow):
    """An LLM agent with tools; run it in-process or register it as a durable job.

    ``agent.run("What is 2 + 2?").output()`` is the model's final answer (its
    first reply without tool calls). Data kept in the context:

    - ``messages``: the conversation, in Chat Completions shape;
    - ``usage``: ``{"prompt_tokens", "completion_tokens", "total_tokens", "calls"}``
      summed over every model call;
    - ``pending_tool_calls``: the calls ``ToolCall`` is about to run.

    ``max_model_calls`` (the original Envoy's ``maxSteps``) caps the model
    calls: when the last one allowed still asks for tools, the flow ends with
    ``ctx.error()`` instead of running them. ``max_steps`` is the flow's own
    limit and counts flow steps: each model call and each batch of tool
    calls is one (default: twice ``max_model_calls``, or 10).

    Tools may be ``def`` or ``async def``, and take ``(args)`` or ``(args,
    ctx)``. A tool that raises (or that the model calls wrongly) is answered
    with the error, so the model can correct itself, and the error is
    recorded in the step's notes (``ctx.note("tool_error", ...)``), which
    the admin job page shows.

    Tools with ``requires_approval`` escalate to their ``approver`` (or the
    agent's ``approver``) before they run; that needs a durable job, since
    ``run()`` cannot wait for a person.

    ``rate_limit`` names a limit in ``ENVOY["RATE_LIMITS"]`` that every
    model call takes from, shared by all workers: over it, the job waits as
    pending until the limit has room (no worker sleeps, no retry is spent).
    """

    def __init__(
        self,
        provider: LlmProvider,
        tools: Iterable[dict[str, Any] | Tool] | None = None,
        *,
        max_model_calls: int | None = None,
        max_steps: int | None = None,
        system_prompt: str | None = None,
        approver: str | None = None,
        model_options: dict[str, Any] | None = None,
        plugins: Iterable[Any] = (),
        rate_limit: str | None = None,
    ) -> None:
        if not callable(getattr(provider, "generate", None)):
            raise FlowDefinitionError(
                f"ToolAgent needs a provider with a generate() method, got {type(provider).__name__}"
            )
        if max_model_calls is not None and (
            isinstance(max_model_calls, bool) or not isinstance(max_model_calls, int) or max_model_calls < 1
        ):
            raise FlowDefinitionError(f"max_model_calls must be a positive integer, got {max_model_calls!r}")
        if max_steps is None:
            max_steps = 2 * max_model_calls if max_model_calls else 10
        self.provider = provider
        self.max_model_calls = max_model_calls
        self.tools: dict[str, Tool] = normalize_tools(tools, approver)
        self.system_prompt = system_prompt
        self.approver = approver
        self.model_options = dict(model_options or {})
        if rate_limit is not None and (not isinstance(rate_limit, str) or not rate_limit):
            raise FlowDefinitionError(f"rate_limit must name a limit in ENVOY['RATE_LIMITS'], got {rate_limit!r}")
        self.rate_limit = rate_limit
        needs_approval = any(tool.requires_approval for tool in self.tools.values())
        super().__init__(
            [
                {
                    "name": PLAN,
                    "on_state": self._plan,
                    "router": {"routes": {TOOL_CALL: "the model called tools"}, "on_route": self._route_plan},
                },
                {
                    "name": TOOL_CALL,
                    # Only agents with approval tools pay for the extra phase.
                    "on_enter": self._ask_approvals if needs_approval else None,
                    # Async tools need an event loop: the batch then runs as a coroutine.
                    "on_state": self._run_tools_async if any(t.is_async for t in self.tools.values())
                    else self._run_tools,
                    "router": {"next": PLAN},
                },
            ],
            max_steps=max_steps,
            plugins=plugins,
        )

    # --- Plan: one model call ------------------------------------------------

    def _initial_messages(self, question: Any) -> list[dict[str, Any]]:
        if isinstance(question, str):
            messages = [{"role": "user", "content": question}]
        elif isinstance(question, list) and question and all(isinstance(m, dict) and "role" in m for m in question):
            messages = list(question)
        else:
            raise FlowError(
                "ToolAgent input must be a question (a string) or a list of chat messages "
                f"({{'role', 'content'}} dicts), got {str(question)[:80]!r}"
            )
        if self.system_prompt and messages[0].get("role") != "system":
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def _plan(self, ctx: Context) -> Context:
        messages = ctx.get("messages")
        if messages is None:
            messages = self._initial_messages(ctx.input())
        specs = [tool.spec() for tool in self.tools.values()]
        if self.rate_limit:
            from envoy_django.ratelimits import acquire  # Django's cache: only agents that use a limit load it

            acquire(self.rate_limit)
        response = self.provider.generate(messages, tools=specs or None, **self.model_options)
        calls = [storable(dict(call)) for call in response.tool_calls or []]
        text = storable(response.text)
        seen: set[str] = set()
        for index, call in enumerate(calls):
            # Tool messages and approvals are keyed by id: some local servers
            # leave ids out or repeat one within a turn, so make them unique.
            if not isinstance(call.get("id"), str) or not call["id"] or call["id"] in seen:
                call["id"] = f"call_{ctx.step()}_{index}"
            seen.add(call["id"])
        assistant: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            assistant["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}}
                for c in calls
            ]
        ctx.set("messages", [*messages, assistant])
        ctx.set("pending_tool_calls", calls)
        usage = ctx.get("usage") or {key: 0 for key in (*USAGE_KEYS, "calls")}
        for key in USAGE_KEYS:
            usage[key] += int((response.usage or {}).get(key) or 0)
        usage["calls"] += 1
        ctx.set("usage", usage)
        if not calls:
            ctx.output(text or "")
        elif self.max_model_calls and usage["calls"] >= self.max_model_calls:
            ctx.error(
                f"max_model_calls ({self.max_model_calls}) reached and the model still calls tools "
                f"({', '.join(str(c.get('name')) for c in calls)})"
            )
        return ctx

    def _route_plan(self, ctx: Context) -> str | None:
        return TOOL_CALL if ctx.get("pending_tool_calls") else None

    # --- ToolCall: one batch of tool calls -------------------------------------

    def _ask_approvals(self, ctx: Context) -> Context:
        """Escalate every call that needs a person's yes; the phase blocks until they answer.

        The wait ids go in ``$approvals``, which the engine drops when the
        state routes on, so they never leak into the next batch.
        """
        approvals: dict[str, str] = {}
        for call in ctx.get("pending_tool_calls") or []:
            tool = self.tools.get(call["name"])
            if tool is None or not tool.requires_approval or call.get("error"):
                continue
            arguments = json.dumps(call.get("arguments") or {}, indent=2, sort_keys=True, ensure_ascii=False)
            approvals[call["id"]] = ctx.escalate(
                tool.approver or "",
                f"The agent wants to run the tool {tool.name!r} with these arguments:\n{arguments}",
                inputs=[
                    {"id": "approve", "type": "approve", "label": f"Run {tool.name}"},
                    {"id": "comment", "type": "comment", "label": "Comment"},
                ],
                on_reject="continue",
            )
        ctx.set("$approvals", approvals)
        return ctx

    def _run_tools(self, ctx: Context) -> Context:
        """Run the batch in the model's order and answer every call with a ``tool`` message.

        Calls run one after another in this worker thread, not in threads of
        their own: handlers may use the Django ORM (connections are per
        thread) and may touch ``ctx``. Failures are answers too - the model
        reads the error and can correct itself - so they never fail the job.
        """
        approvals = ctx.get("$approvals") or {}
        replies = []
        for call in ctx.get("pending_tool_calls") or []:
            tool, answer = self._prepare(ctx, call, approvals.get(call["id"]))
            if tool is not None:
                try:
                    answer = _as_text(tool.call(dict(call.get("arguments") or {}), ctx))
                except Exception as exc:  # fed back to the model, and noted for people
                    answer = self._failed(ctx, call, f"tool {call['name']!r} raised {type(exc).__name__}: {exc}")
            replies.append({"role": "tool", "tool_call_id": call["id"], "content": storable(answer)})
        return self._answered(ctx, replies)

    async def _run_tools_async(self, ctx: Context) -> Context:
        """``_run_tools`` for agents with async tools: those are awaited, the sync ones run in the worker thread.

        Driven by a worker (``flow.step``), this coroutine runs under Django's
        ``async_to_sync``, and ``sync_to_async`` brings each sync tool back to
        the worker's own thread and database connection.
        """
        from asgiref.sync import sync_to_async

        approvals = ctx.get("$approvals") or {}
        replies = []
        for call in ctx.get("pending_tool_calls") or []:
            tool, answer = self._prepare(ctx, call, approvals.get(call["id"]))
            if tool is not None:
                arguments = dict(call.get("arguments") or {})
                try:
                    if tool.is_async:
                        value = await tool.call(arguments, ctx)
                    else:
                        value = await sync_to_async(tool.call, thread_sensitive=True)(arguments, ctx)
                    answer = _as_text(value)
                except Exception as exc:
                    answer = self._failed(ctx, call, f"tool {call['name']!r} raised {type(exc).__name__}: {exc}")
            replies.append({"role": "tool", "tool_call_id": call["id"], "content": storable(answer)})
        return self._answered(ctx, replies)

    @staticmethod
    def _answered(ctx: Context, replies: list[dict[str, Any]]) -> Context:
        ctx.set("messages", [*(ctx.get("messages") or []), *replies])
        ctx.set("pending_tool_calls", [])
        return ctx

    def _prepare(self, ctx: Context, call: dict[str, Any], wait_id: str | None) -> tuple[Tool | None, str]:
        """The tool to run for ``call``, or None and the answer the model gets instead."""
        name = call["name"]
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(self.tools) or "none"
            return None, self._failed(ctx, call, f"unknown tool {name!r}. Available tools: {known}.")
        if call.get("error"):
            return None, self._failed(ctx, call, f"could not call {name!r}: {call['error']}")
        if tool.requires_approval and wait_id is None:
            # Only possible for a job checkpointed by a build of the agent in
            # which this tool needed no approval: never run it unasked.
            return None, f"Not run: {name!r} needs approval and none was asked for this call."
        if wait_id is not None:
            result = ctx.result(wait_id)
            if result is None:
                raise FlowError(f"tool {name!r} still waits for approval {wait_id!r}")
            if result["status"] != "approved":
                comment = str((result.get("value") or {}).get("comment") or "").strip()
                if result["status"] == "rejected":
                    return None, f"Rejected by reviewer: {comment}" if comment else "Rejected by reviewer."
                return None, f"Not run: the approval ended as {result['status']}."
        return tool, ""

    @staticmethod
    def _failed(ctx: Context, call: dict[str, Any], error: str) -> str:
        """Note a failed call in the job's history; return what the model is told."""
        ctx.note("tool_error", tool=str(call.get("name")), arguments=storable(call.get("arguments") or {}),
                 error=storable(error))
        return f"Error: {error}"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    # The tool ran: a result JSON cannot carry (a datetime, a model
    # instance) is shown as text rather than reported as a failure.
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
