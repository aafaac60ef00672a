"""A scripted local OpenAI server and providers on the real ``openai`` client pointed at it.

Nothing here reaches the internet: every provider's ``base_url`` is the
local server, and every provider and server is closed after the test.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

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
