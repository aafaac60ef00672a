"""A scripted local OpenAI server and providers on the real ``openai`` client pointed at it.

Nothing here reaches the internet: every provider's ``base_url`` is the
local server, and every provider and server is closed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from envoy_django.llm import OpenAIProvider
from envoy_django.testing.openai_server import ScriptedOpenAIServer


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as srv:
        yield srv


@pytest.fixture
def make_provider(server: ScriptedOpenAIServer) -> Iterator[Callable[..., OpenAIProvider]]:
    made: list[OpenAIProvider] = []

    def make(**kwargs: Any) -> OpenAIProvider:
        kwargs.setdefault("api_key", "test-key")
        kwargs.setdefault("base_url", server.base_url)
        kwargs.setdefault("max_retries", 0)
        provider = OpenAIProvider(**kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., OpenAIProvider]) -> OpenAIProvider:
    return make_provider()


# --- durable agents (tests/testapp/agent_flows.py) through the scheduler -------------



@pytest.fixture
def scripted_agents(server: ScriptedOpenAIServer) -> Iterator[Callable[..., ScriptedOpenAIServer]]:
    """Aim the registered test agents at this test's server; ``scripted_agents(max_retries=n)`` re-aims.

    Yields a function (called once for the default of no client retries)
    so a test can choose how often the openai client retries by itself.
    """
    from tests.testapp import agent_flows

    agent_flows.tool_runs.clear()

    def aim(max_retries: int = 0) -> ScriptedOpenAIServer:
        agent_flows.endpoint.point_at(server.base_url, max_retries=max_retries)
        return server

    aim()
    yield aim
    agent_flows.endpoint.reset()
    agent_flows.tool_runs.clear()
