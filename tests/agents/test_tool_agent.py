"""ToolAgent run in-process (``agent.run``) against the real openai client and a local scripted server."""

from __future__ import annotations

from typing import Any

import pytest

from envoy_django.agents import ToolAgent
from envoy_django.exceptions import FlowDefinitionError, FlowError
from envoy_django.testing.openai_server import text_reply, tool_call_reply


def add_tool(calls: list[dict] | None = None, **extra: Any) -> dict:
    def add(args: dict, ctx: Any) -> float:
        if calls is not None:
            calls.append(args)
        return args["a"] + args["b"]

    return {"name": "add", "description": "Add two numbers.", "parameters": {"a": "number", "b": "number"},
            "handler": add, **extra}


def mul_tool(calls: list[dict] | None = None) -> dict:
    def mul(args: dict, ctx: Any) -> float:
        if calls is not None:
            calls.append(args)
        return args["a"] * args["b"]

    return {"name": "mul", "description": "Multiply two numbers.", "parameters": {"a": "number", "b": "number"},
            "handler": mul}


def test_single_tool_call(server, provider):
    server.add(tool_call_reply(("add", {"a": 2, "b": 2})), text_reply("2 + 2 is 4."))
    calls: list[dict] = []
    agent = ToolAgent(provider, tools=[add_tool(calls)])

    ctx = agent.run("What is 2 + 2?")

    assert ctx.done() == "finished"
    assert ctx.output() == "2 + 2 is 4."
    assert calls == [{"a": 2, "b": 2}]
    first, second = server.requests
    assert first["model"] == "gpt-4.1-mini"
    assert first["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert first["tools"] == [{
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                           "required": ["a", "b"], "additionalProperties": False},
        },
    }]
    assistant, tool_message = second["messages"][1:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"][0]["function"] == {"name": "add", "arguments": '{"a": 2, "b": 2}'}
    assert tool_message == {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": "4"}
    # The conversation is JSON in ctx data, ending with the answer.
    assert ctx.get("messages")[-1] == {"role": "assistant", "content": "2 + 2 is 4."}


def test_parallel_tool_calls_run_in_one_batch_and_all_results_go_back(server, provider):
    server.add(
        tool_call_reply(("add", {"a": 1, "b": 2}), ("mul", {"a": 3, "b": 4})),
        text_reply("3 and 12"),
    )
    added: list[dict] = []
    multiplied: list[dict] = []
    agent = ToolAgent(provider, tools=[add_tool(added), mul_tool(multiplied)])

    ctx = agent.run("Add 1 and 2, multiply 3 by 4")

    assert ctx.output() == "3 and 12"
    assert added == [{"a": 1, "b": 2}] and multiplied == [{"a": 3, "b": 4}]
    assert ctx.step() == 3  # Plan, one ToolCall batch, Plan
    assert len(server.requests) == 2
    sent = server.requests[1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    ids = [call["id"] for call in sent[1]["tool_calls"]]
    assert [(m["tool_call_id"], m["content"]) for m in sent[2:]] == [(ids[0], "3"), (ids[1], "12")]


def test_tool_exception_is_fed_back_to_the_model(server, provider):
    server.add(tool_call_reply(("divide", {"a": 1, "b": 0})), text_reply("You cannot divide by zero."))

    def divide(args: dict, ctx: Any) -> float:
        return args["a"] / args["b"]

    agent = ToolAgent(provider, tools=[{"name": "divide", "parameters": {"a": "number", "b": "number"},
                                        "handler": divide}])
    ctx = agent.run("1 / 0?")

    assert ctx.done() == "finished"
    assert ctx.output() == "You cannot divide by zero."
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"].startswith("Error: tool 'divide' raised ZeroDivisionError:")


def test_unknown_tool_is_fed_back_to_the_model(server, provider):
    server.add(tool_call_reply(("subtract", {"a": 5, "b": 3})), text_reply("I only have add."))
    agent = ToolAgent(provider, tools=[add_tool()])

    ctx = agent.run("5 - 3?")

    assert ctx.output() == "I only have add."
    assert server.requests[1]["messages"][-1]["content"] == "Error: unknown tool 'subtract'. Available tools: add."


def test_broken_json_arguments_are_fed_back_to_the_model(server, provider):
    server.add(tool_call_reply({"name": "add", "arguments": '{"a": 2, "b":'}), text_reply("sorry"))
    calls: list[dict] = []
    agent = ToolAgent(provider, tools=[add_tool(calls)])

    ctx = agent.run("2 + 2?")

    assert ctx.output() == "sorry"
    assert calls == []
    assert "arguments are not valid JSON" in server.requests[1]["messages"][-1]["content"]


def test_max_steps_ends_the_flow(server, provider):
    server.responder = lambda messages: tool_call_reply(("add", {"a": 1, "b": 1}))
    calls: list[dict] = []
    agent = ToolAgent(provider, tools=[add_tool(calls)], max_steps=4)

    ctx = agent.run("Loop forever")

    assert ctx.done() == "max_steps"
    assert "max_steps (4)" in ctx.error()
    assert ctx.output() is None
    # Steps: Plan(1) ToolCall(2) Plan(3) ToolCall(4) -> the limit.
    assert len(server.requests) == 2
    assert len(calls) == 2
    assert ctx.get("usage")["calls"] == 2


def test_usage_accumulates_over_model_calls(server, provider):
    server.add(
        tool_call_reply(("add", {"a": 1, "b": 1}), usage={"prompt_tokens": 10, "completion_tokens": 5,
                                                          "total_tokens": 15}),
        tool_call_reply(("add", {"a": 2, "b": 2}), usage={"prompt_tokens": 20, "completion_tokens": 7,
                                                          "total_tokens": 27}),
        text_reply("done", usage={"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33}),
    )
    agent = ToolAgent(provider, tools=[add_tool()])

    ctx = agent.run("go")

    assert ctx.get("usage") == {"prompt_tokens": 60, "completion_tokens": 15, "total_tokens": 75, "calls": 3}


def test_no_tool_call_answers_directly_with_system_prompt_and_model_options(server, make_provider):
    server.add(text_reply("Hello!"))
    provider = make_provider(model="local-model", temperature=0.5)
    agent = ToolAgent(provider, system_prompt="Be brief.", model_options={"max_tokens": 50})

    ctx = agent.run("Hi")

    assert ctx.output() == "Hello!"
    body = server.requests[0]
    assert body["model"] == "local-model"
    assert body["temperature"] == 0.5 and body["max_tokens"] == 50
    assert "tools" not in body  # no tools, no empty list
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_input_may_be_a_conversation(server, provider):
    server.add(text_reply("Paris."))
    history = [{"role": "user", "content": "Capital of France?"}]
    ctx = ToolAgent(provider).run(history)
    assert ctx.output() == "Paris."
    assert server.requests[0]["messages"] == history


def test_bad_input_fails_without_calling_the_model(server, provider):
    with pytest.raises(FlowError, match="question"):
        ToolAgent(provider).run({"not": "a question"})
    assert server.requests == []


def test_tool_definition_mistakes_are_caught_at_construction(provider):
    with pytest.raises(FlowDefinitionError, match="handler"):
        ToolAgent(provider, tools=[{"name": "x"}])
    with pytest.raises(FlowDefinitionError, match="two tools"):
        ToolAgent(provider, tools=[add_tool(), add_tool()])
    with pytest.raises(FlowDefinitionError, match="approver"):
        ToolAgent(provider, tools=[add_tool(requires_approval=True)])
    with pytest.raises(FlowDefinitionError, match="unknown keys"):
        ToolAgent(provider, tools=[add_tool(descripton="typo")])


def test_agent_is_a_state_flow_with_a_plan_toolcall_loop(provider):
    from envoy_django.flow import StateFlow

    agent = ToolAgent(provider, tools=[add_tool()])
    assert isinstance(agent, StateFlow)
    graph = agent.graph()
    assert [s["name"] for s in graph["states"]] == ["Plan", "ToolCall"]
    assert {(e["source"], e["target"]) for e in graph["edges"]} == {("Plan", "ToolCall"), ("ToolCall", "Plan")}


class FakeProvider:
    """Any object with generate() is a provider; the agent never needs openai."""

    def __init__(self, *responses: Any) -> None:
        self.responses = list(responses)
        self.seen: list[list[dict]] = []

    def generate(self, messages: list[dict], tools: list[dict] | None = None, **options: Any) -> Any:
        self.seen.append(messages)
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return response


def test_any_provider_works_and_missing_call_ids_are_filled_in():
    from envoy_django.llm import LlmResponse

    provider = FakeProvider(
        LlmResponse(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}], usage=None),  # type: ignore[arg-type]
        LlmResponse(text="2"),
    )
    ctx = ToolAgent(provider, tools=[add_tool()]).run("1 + 1")
    assert ctx.output() == "2"
    assert provider.seen[1][-1] == {"role": "tool", "tool_call_id": "call_1_0", "content": "2"}
    assert ctx.get("usage") == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "calls": 2}


def test_permanent_llm_error_from_any_provider_is_not_retried():
    from envoy_django.exceptions import HandlerError
    from envoy_django.llm import LlmPermanentError, LlmRetryableError

    with pytest.raises(FlowError, match="model gone"):
        ToolAgent(FakeProvider(LlmPermanentError("model gone", model="m", status=404))).run("hi")
    with pytest.raises(HandlerError, match="try later"):
        ToolAgent(FakeProvider(LlmRetryableError("try later", model="m", status=503))).run("hi")


def test_provider_must_have_generate():
    with pytest.raises(FlowDefinitionError, match="generate"):
        ToolAgent(object())  # type: ignore[arg-type]


def test_missing_and_repeated_call_ids_are_made_unique():
    """Some local servers send no id, or the same id twice in a turn; results must still pair up."""
    from envoy_django.llm import LlmResponse

    provider = FakeProvider(
        LlmResponse(tool_calls=[{"id": "same", "name": "add", "arguments": {"a": 1, "b": 1}},
                                {"id": "same", "name": "add", "arguments": {"a": 2, "b": 2}},
                                {"id": None, "name": "add", "arguments": {"a": 3, "b": 3}}]),
        LlmResponse(text="2, 4, 6"),
    )
    ctx = ToolAgent(provider, tools=[add_tool()]).run("sums")
    assistant = provider.seen[1][1]
    ids = [call["id"] for call in assistant["tool_calls"]]
    assert ids == ["same", "call_1_1", "call_1_2"]
    answers = [(m["tool_call_id"], m["content"]) for m in provider.seen[1][2:]]
    assert answers == list(zip(ids, ["2", "4", "6"], strict=True))
    assert ctx.output() == "2, 4, 6"


def test_a_result_json_cannot_carry_is_sent_as_text_not_as_an_error():
    import datetime as dt

    from envoy_django.llm import LlmResponse

    ran: list[bool] = []

    def now(args: dict, ctx: Any) -> dict:
        ran.append(True)
        return {"at": dt.datetime(2026, 1, 2, 3, 4, 5)}

    provider = FakeProvider(LlmResponse(tool_calls=[{"id": "c", "name": "now", "arguments": {}}]),
                            LlmResponse(text="ok"))
    ToolAgent(provider, tools=[{"name": "now", "handler": now}]).run("time?")
    assert ran == [True]
    assert provider.seen[1][-1]["content"] == '{"at": "2026-01-02 03:04:05"}'
