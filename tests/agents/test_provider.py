"""OpenAIProvider on the real openai client: retries, error classes, schemas; plus the scripted server itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from envoy_django.agents import ToolAgent, parameters_schema
from envoy_django.exceptions import (
    EnvoyError,
    FlowDefinitionError,
    FlowError,
    HandlerError,
)
from envoy_django.llm import (
    LlmPermanentError,
    LlmProvider,
    LlmResponse,
    LlmRetryableError,
    OpenAIProvider,
)
from envoy_django.testing.openai_server import (
    ScriptedOpenAIServer,
    arithmetic_responder,
    error_reply,
    text_reply,
    tool_call_reply,
)


def test_provider_returns_an_llm_response(server, provider):
    server.add(tool_call_reply(("add", {"a": 1, "b": 2}), usage={"prompt_tokens": 3, "completion_tokens": 4,
                                                                   "total_tokens": 7}))
    response = provider.generate([{"role": "user", "content": "1+2"}],
                                 tools=[{"name": "add", "parameters": {"type": "object", "properties": {}}}])
    assert isinstance(provider, LlmProvider)
    assert response == LlmResponse(
        text=None,
        tool_calls=[{"id": "call_1_0", "name": "add", "arguments": {"a": 1, "b": 2}}],
        usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        finish_reason="tool_calls",
    )
    assert server.request_headers[0]["authorization"] == "Bearer test-key"


def test_rate_limit_then_success_is_retried_by_the_client(server, make_provider):
    server.add(error_reply(429, "slow down"), error_reply(429, "slow down"), text_reply("finally"))
    provider = make_provider(max_retries=2)

    ctx = ToolAgent(provider).run("hi")

    assert ctx.output() == "finally"
    assert len(server.requests) == 3
    assert server.requests[0] == server.requests[2]  # the same request, sent again


def test_rate_limit_beyond_client_retries_is_a_retryable_handler_error(server, make_provider):
    server.add(error_reply(429, "slow down"), error_reply(429, "slow down"))
    provider = make_provider(max_retries=1, model="gpt-test")

    with pytest.raises(HandlerError) as info:
        ToolAgent(provider).run("hi")

    # HandlerError (not FlowError) is what the scheduler retries with backoff.
    original = info.value.original
    assert isinstance(original, LlmRetryableError) and not isinstance(original, EnvoyError)
    assert original.status == 429 and original.model == "gpt-test"
    assert "'gpt-test'" in str(original) and "HTTP 429" in str(original) and "slow down" in str(original)
    assert len(server.requests) == 2


def test_server_error_is_retryable(server, make_provider):
    server.add(error_reply(500, "boom"))
    with pytest.raises(LlmRetryableError, match="HTTP 500"):
        make_provider().generate([{"role": "user", "content": "hi"}])


def test_connection_error_is_retryable(make_provider):
    with ScriptedOpenAIServer() as gone:
        url = gone.base_url
    # Nothing listens there any more.
    with pytest.raises(LlmRetryableError, match="APIConnectionError"):
        make_provider(base_url=url).generate([{"role": "user", "content": "hi"}])


def test_unauthorized_fails_at_once_with_a_clear_non_retryable_error(server, make_provider):
    server.add(error_reply(401, "Incorrect API key provided"))
    provider = make_provider(max_retries=3, model="gpt-test")

    with pytest.raises(FlowError) as info:
        ToolAgent(provider).run("hi")

    # FlowError is what the scheduler fails at once, without retry.
    cause = info.value.__cause__
    assert isinstance(cause, LlmPermanentError) and isinstance(cause, EnvoyError)
    assert cause.status == 401
    message = str(info.value)
    assert "on_state of state 'Plan'" in message
    assert "'gpt-test'" in message and "HTTP 401" in message and "AuthenticationError" in message
    assert "Incorrect API key provided" in message
    assert len(server.requests) == 1  # the client did not retry either


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_client_errors_are_permanent(server, provider, status):
    server.add(error_reply(status))
    with pytest.raises(LlmPermanentError, match=f"HTTP {status}"):
        provider.generate([{"role": "user", "content": "hi"}])


def test_missing_api_key_is_permanent(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = OpenAIProvider(base_url="http://127.0.0.1:9/v1")  # built without a key: fine until used
    with pytest.raises(LlmPermanentError, match="cannot create the OpenAI client"):
        provider.generate([{"role": "user", "content": "hi"}])


def test_a_client_handed_in_is_used_and_left_open(server):
    import openai

    with openai.OpenAI(api_key="mine", base_url=server.base_url, max_retries=0) as client:
        server.add(text_reply("ok"))
        provider = OpenAIProvider(client=client)
        assert provider.generate([{"role": "user", "content": "hi"}]).text == "ok"
        provider.close()
        assert not client.is_closed()
    assert server.request_headers[0]["authorization"] == "Bearer mine"


def test_short_form_parameters_become_json_schema():
    assert parameters_schema({"a": "number", "name": "string", "n": "integer", "ok": "boolean",
                              "opts": "object", "items": "array"}) == {
        "type": "object",
        "properties": {"a": {"type": "number"}, "name": {"type": "string"}, "n": {"type": "integer"},
                       "ok": {"type": "boolean"}, "opts": {"type": "object"}, "items": {"type": "array"}},
        "required": ["a", "name", "n", "ok", "opts", "items"],
        "additionalProperties": False,
    }
    described = {"city": {"type": "string", "description": "City name"}}
    assert parameters_schema(described)["properties"] == described
    full = {"type": "object", "properties": {"q": {"type": "string"}}, "required": []}
    assert parameters_schema(full) is full
    assert parameters_schema(None) == {"type": "object", "properties": {}}
    with pytest.raises(FlowDefinitionError, match="parameter 'a' has type 'float'"):
        parameters_schema({"a": "float"})


def test_arithmetic_responder_is_an_offline_model(server, provider):
    server.responder = arithmetic_responder
    agent = ToolAgent(provider, tools=[{"name": "add", "parameters": {"a": "number", "b": "number"},
                                        "handler": lambda args, ctx: args["a"] + args["b"]}])
    assert agent.run("What is 19 + 23?").output() == "The answer is 42."
    assert agent.run("What is 1.5 + 2?").output() == "The answer is 3.5."
    assert agent.run("Hello").output().startswith("I can only add")


def test_exhausted_script_fails_fast_and_says_why(server, make_provider):
    with pytest.raises(LlmRetryableError, match="no reply for request 1"):
        make_provider(max_retries=3).generate([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 1  # x-should-retry: false stopped the client's retries


def test_server_lifecycle():
    server = ScriptedOpenAIServer([text_reply("x")]).start()
    try:
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
        assert server.remaining == 1
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()
    server.stop()  # twice is harmless
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url


def test_imports_stay_light():
    """Agents and the LLM interface load without Django or openai; the flow engine never loads openai."""
    code = (
        "import sys\n"
        "import envoy_django.flow\n"
        "assert 'openai' not in sys.modules\n"
        "import envoy_django.llm, envoy_django.agents\n"
        "assert 'openai' not in sys.modules, 'openai'\n"
        "assert 'django' not in sys.modules, 'django'\n"
        "from envoy_django.llm import OpenAIProvider\n"
        "assert 'openai' in sys.modules and 'django' not in sys.modules\n"
        "import envoy_django\n"
        "assert envoy_django.ToolAgent is envoy_django.agents.ToolAgent\n"
        "assert envoy_django.OpenAIProvider is OpenAIProvider\n"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_forked_process_makes_its_own_client(server, monkeypatch):
    """envoy_worker forks: a child must not share the parent's pooled connections."""
    import envoy_django.llm.openai_provider as module

    server.add(text_reply("parent"), text_reply("child"))
    with OpenAIProvider(api_key="k", base_url=server.base_url, max_retries=0) as provider:
        assert provider.generate([{"role": "user", "content": "hi"}]).text == "parent"
        parent_client = provider.client
        monkeypatch.setattr(module.os, "getpid", lambda: -1)  # now "in the child"
        assert provider.generate([{"role": "user", "content": "hi"}]).text == "child"
        assert provider.client is not parent_client
        assert not parent_client.is_closed()  # left alone: it is the parent's
        monkeypatch.undo()
        parent_client.close()
