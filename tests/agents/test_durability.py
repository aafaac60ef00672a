"""Approval and crash-resume at the engine level: stepping by hand, as the scheduler does.

The scheduler saves ``ctx.serialize()`` after every ``flow.step()`` and, on
another worker, continues from ``Context.from_serialized``; these tests do
the same with JSON in a variable.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from envoy_django.agents import ToolAgent
from envoy_django.exceptions import WaitInRunError
from envoy_django.flow import Context
from envoy_django.testing.flows import resolve
from envoy_django.testing.openai_server import text_reply, tool_call_reply


def transfer_tool(ran: list[dict]) -> dict:
    def transfer(args: dict, ctx: Any) -> dict:
        ran.append(args)
        return {"ok": True, "sent": args["amount"]}

    return {"name": "transfer", "description": "Send money.", "parameters": {"to": "string", "amount": "number"},
            "handler": transfer, "requires_approval": True, "approver": "alice"}


def lookup_tool(ran: list[dict]) -> dict:
    def lookup(args: dict, ctx: Any) -> str:
        ran.append(args)
        return "balance: 100"

    return {"name": "lookup", "parameters": {"account": "string"}, "handler": lookup}


def step_until_blocked(agent: ToolAgent, ctx: Context) -> Context:
    while not ctx.done() and not ctx.waiting():
        ctx = agent.step(ctx)
    return ctx


def test_approved_tool_runs_after_the_reviewer_says_yes(server, provider):
    server.add(
        tool_call_reply(("transfer", {"to": "bob", "amount": 5}), ("lookup", {"account": "bob"})),
        text_reply("Sent 5 to bob."),
    )
    transfers: list[dict] = []
    lookups: list[dict] = []
    agent = ToolAgent(provider, tools=[transfer_tool(transfers), lookup_tool(lookups)])

    ctx = step_until_blocked(agent, agent.initial_context("Send bob 5"))

    assert ctx.state() == "ToolCall" and not ctx.done()
    (wait_id,) = ctx.waiting()
    (wait,) = ctx.waits()
    assert wait["type"] == "escalation"
    params = wait["params"]
    assert params["user"] == "alice" and params["on_reject"] == "continue"
    message = params["message"]
    assert "'transfer'" in message and '"amount": 5' in message and '"to": "bob"' in message
    assert [(i["id"], i["type"]) for i in params["inputs"]] == [("approve", "approve"), ("comment", "comment")]
    assert transfers == [] and lookups == []  # nothing runs before the answer
    assert len(server.requests) == 1

    ctx = resolve(ctx, wait_id, "approved", {"approve": True, "comment": ""})
    ctx = step_until_blocked(agent, ctx)

    assert ctx.done() == "finished" and ctx.output() == "Sent 5 to bob."
    assert transfers == [{"to": "bob", "amount": 5}] and lookups == [{"account": "bob"}]
    tool_messages = server.requests[1]["messages"][-2:]
    assert [m["content"] for m in tool_messages] == ['{"ok": true, "sent": 5}', "balance: 100"]
    assert "$approvals" not in ctx.data()  # transient: dropped when ToolCall routed on


def test_rejected_tool_does_not_run_and_the_comment_goes_to_the_model(server, provider):
    server.add(tool_call_reply(("transfer", {"to": "mallory", "amount": 1000})), text_reply("OK, I did not send it."))
    transfers: list[dict] = []
    agent = ToolAgent(provider, tools=[transfer_tool(transfers)])

    ctx = step_until_blocked(agent, agent.initial_context("Send mallory 1000"))
    (wait_id,) = ctx.waiting()
    ctx = resolve(ctx, wait_id, "rejected", {"approve": False, "comment": "Not to mallory."})
    ctx = step_until_blocked(agent, ctx)

    assert ctx.done() == "finished" and ctx.output() == "OK, I did not send it."
    assert transfers == []
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"] == "Rejected by reviewer: Not to mallory."


def test_agent_level_approver_is_the_default(provider):
    tool = transfer_tool([])
    del tool["approver"]
    agent = ToolAgent(provider, tools=[tool], approver="bob")
    assert agent.tools["transfer"].approver == "bob"


def test_approval_needs_a_durable_job(server, provider):
    server.add(tool_call_reply(("transfer", {"to": "bob", "amount": 5})))
    agent = ToolAgent(provider, tools=[transfer_tool([])])
    with pytest.raises(WaitInRunError, match="escalate"):
        agent.run("Send bob 5")


def test_resume_from_every_checkpoint_runs_each_tool_and_model_call_once(server, make_provider):
    """Rebuild the context from JSON after every step, on a fresh agent, like a new worker would."""
    server.add(
        tool_call_reply(("lookup", {"account": "a"})),
        tool_call_reply(("lookup", {"account": "b"}), ("lookup", {"account": "c"})),
        text_reply("a, b and c have 100 each."),
    )
    lookups: list[dict] = []
    agent = ToolAgent(make_provider(), tools=[lookup_tool(lookups)])
    checkpoint = json.dumps(agent.initial_context("Balances of a, b, c?").serialize())
    phases = []

    while True:
        worker = ToolAgent(make_provider(), tools=[lookup_tool(lookups)])
        result = worker.advance(Context.from_serialized(json.loads(checkpoint)))
        ctx = result.context
        phases.append((result.state, result.phase))
        checkpoint = json.dumps(ctx.serialize())
        if ctx.done():
            break

    assert ctx.done() == "finished" and ctx.output() == "a, b and c have 100 each."
    assert lookups == [{"account": "a"}, {"account": "b"}, {"account": "c"}]
    assert len(server.requests) == 3  # one model call per Plan step
    assert phases.count(("Plan", "state")) == 3 and phases.count(("ToolCall", "state")) == 2


def test_crash_after_the_tool_ran_resumes_at_the_next_model_call(server, provider):
    server.add(tool_call_reply(("lookup", {"account": "a"})), text_reply("100"))
    lookups: list[dict] = []
    agent = ToolAgent(provider, tools=[lookup_tool(lookups)])

    ctx = agent.initial_context("Balance of a?")
    while True:
        result = agent.advance(ctx)
        ctx = result.context
        if (result.state, result.phase) == ("ToolCall", "state"):
            break
    saved = json.dumps(ctx.serialize())  # the checkpoint written right after the tool ran
    assert lookups == [{"account": "a"}] and len(server.requests) == 1
    del ctx  # the worker dies here

    resumed = Context.from_serialized(json.loads(saved))
    while not resumed.done():
        resumed = agent.step(resumed)

    assert resumed.output() == "100"
    assert lookups == [{"account": "a"}]  # not run again
    assert len(server.requests) == 2  # the first Plan's model call was not repeated
    assert server.requests[1]["messages"][-1]["content"] == "balance: 100"


def test_crash_while_waiting_for_approval_resumes_with_the_answer(server, provider):
    server.add(tool_call_reply(("transfer", {"to": "bob", "amount": 5})), text_reply("done"))
    transfers: list[dict] = []
    agent = ToolAgent(provider, tools=[transfer_tool(transfers)])

    blocked = step_until_blocked(agent, agent.initial_context("Send bob 5"))
    saved = json.loads(json.dumps(blocked.serialize()))
    ctx = Context.from_serialized(saved)
    (wait_id,) = ctx.waiting()
    ctx = resolve(ctx, wait_id, "approved", {"approve": True, "comment": "fine"})
    ctx = step_until_blocked(ToolAgent(provider, tools=[transfer_tool(transfers)]), ctx)

    assert ctx.output() == "done"
    assert transfers == [{"to": "bob", "amount": 5}]
    assert len(server.requests) == 2


def test_a_gated_tool_never_runs_unasked_even_from_an_older_checkpoint(server, provider):
    """A job saved past the approval phase by a build where the tool was not gated does not run it."""
    server.add(tool_call_reply(("transfer", {"to": "bob", "amount": 5})), text_reply("not sent"))
    transfers: list[dict] = []
    agent = ToolAgent(provider, tools=[transfer_tool(transfers)])
    ctx = agent.step(agent.initial_context("Send bob 5"))  # Plan
    while ctx.state() != "ToolCall":
        ctx = agent.step(ctx)
    saved = ctx.serialize()
    saved["phase"] = "state"  # as if the enter phase had nothing to ask

    ctx = step_until_blocked(agent, Context.from_serialized(saved))

    assert ctx.output() == "not sent" and transfers == []
    assert server.requests[1]["messages"][-1]["content"] == (
        "Not run: 'transfer' needs approval and none was asked for this call."
    )
