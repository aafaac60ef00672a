"""The original Envoy README's ToolAgent, ported as its users write it, runs as a durable job.

Its tools are ``async`` and take the arguments only (``async ({a, b}) => a
+ b``). Before: the port called ``handler(args, ctx)``, never awaited the
coroutine and sent ``"<coroutine object ...>"`` to the model; a one-argument
handler's TypeError went to the model and the job "succeeded"; a tool
error was visible to nobody but the model. Through the real ``openai``
client against the local scripted server, in the embedded mode.
"""

from __future__ import annotations

import asyncio

import pytest

from envoy_django import scheduler
from envoy_django.agents import ToolAgent
from envoy_django.models import Step
from envoy_django.testing.openai_server import text_reply, tool_call_reply
from tests.testapp import agent_flows

pytestmark = pytest.mark.django_db(transaction=True)


def tool_messages(server) -> list[str]:
    return [m["content"] for m in server.requests[-1]["messages"] if m["role"] == "tool"]


def test_async_one_argument_tools_are_awaited_in_a_durable_job(server, scripted_agents):
    server.add(tool_call_reply(("add", {"a": 2, "b": 2}), ("echo", {"text": "hi"})), text_reply("2 + 2 = 4."))

    job = scheduler.get_job(scheduler.schedule("ported_assistant", "What is 2 + 2?"))

    assert (job.status, job.output) == ("done", "2 + 2 = 4."), job.error
    assert tool_messages(server) == ["4", "hi"]
    assert [run["tool"] for run in agent_flows.tool_runs] == ["add", "echo"]


def test_an_async_tool_may_use_the_async_orm(server, scripted_agents):
    server.add(tool_call_reply(("count_users", {"prefix": "al"})), text_reply("One."))
    job = scheduler.get_job(scheduler.schedule("ported_assistant", "How many users start with al?"))
    assert job.status == "done", job.error
    assert tool_messages(server) == ["1"]  # alice


def test_a_tool_error_goes_to_the_model_and_into_the_jobs_history(server, scripted_agents, admin_client):
    server.add(tool_call_reply(("divide", {"a": 1, "b": 0})), text_reply("I cannot divide by zero."))

    job = scheduler.get_job(scheduler.schedule("ported_assistant", "What is 1 / 0?"))

    assert job.status == "done"
    assert tool_messages(server) == ["Error: tool 'divide' raised ZeroDivisionError: division by zero"]
    (step,) = Step.objects.filter(job_id=job.pk, state="ToolCall", phase="state")
    assert step.notes == [{"kind": "tool_error", "tool": "divide", "arguments": {"a": 1, "b": 0},
                           "error": "tool 'divide' raised ZeroDivisionError: division by zero"}]
    html = admin_client.get(f"/admin/envoy_django/job/{job.pk}/change/").content.decode()
    assert "tool_error" in html and "ZeroDivisionError: division by zero" in html


def test_max_model_calls_caps_the_model_calls_not_the_flow_steps(server, scripted_agents):
    server.add(*(tool_call_reply(("echo", {"text": str(n)})) for n in range(5)))

    job = scheduler.get_job(scheduler.schedule("ported_assistant", "Echo forever"))

    assert (job.status, job.error_type) == ("failed", "FlowEnded")
    assert "max_model_calls (3) reached" in job.error
    assert len(server.requests) == 3
    assert [run["args"]["text"] for run in agent_flows.tool_runs] == ["0", "1"]  # the third batch never ran


def _agent(provider, *tools):
    return ToolAgent(provider, tools=[
        {"name": name, "description": name, "parameters": {"a": "number", "b": "number"}, "handler": handler}
        for name, handler in tools
    ])


async def _async_add(args):
    return args["a"] + args["b"]


def _add_with_context(args, ctx):
    return f"{args['a'] + args['b']} in state {ctx.state()}"


@pytest.mark.parametrize("driver", ["run", "arun"])
def test_def_and_async_def_tools_with_one_or_two_arguments_in_both_drivers(server, provider, driver):
    server.add(tool_call_reply(("async_add", {"a": 1, "b": 2}), ("add_in", {"a": 3, "b": 4})), text_reply("done"))
    agent = _agent(provider, ("async_add", _async_add), ("add_in", _add_with_context))
    ctx = agent.run("sum") if driver == "run" else asyncio.run(agent.arun("sum"))
    assert ctx.output() == "done"
    assert tool_messages(server) == ["3", "7 in state ToolCall"]


def test_a_tool_handler_must_take_the_arguments(provider):
    from envoy_django.exceptions import FlowDefinitionError

    with pytest.raises(FlowDefinitionError, match="handler must take the arguments"):
        _agent(provider, ("nothing", lambda: 1))


def test_the_approval_gates_the_tool_it_would_run(server, scripted_agents):
    """Approving with "Run transfer" unticked is refused; only a ticked approval runs the tool."""
    from envoy_django.exceptions import EscalationError
    from envoy_django.models import Escalation

    server.add(tool_call_reply(("transfer", {"to": "mallory", "amount": 5000})), text_reply("Sent."))
    job_id = scheduler.schedule("assistant", "Send mallory 5000")
    escalation = Escalation.objects.get(job_id=job_id)
    with pytest.raises(EscalationError, match=r"approving needs input 'approve' \(Run transfer\) ticked"):
        scheduler.reply_to_escalation(escalation.pk, {"approve": False}, "approved", user="alice")
    escalation.refresh_from_db()
    assert escalation.status == "pending" and agent_flows.tool_runs == []
    scheduler.reply_to_escalation(escalation.pk, {"approve": True}, "approved", user="alice")
    assert [run["tool"] for run in agent_flows.tool_runs] == ["transfer"]
    assert scheduler.get_job(job_id).output == "Sent."
