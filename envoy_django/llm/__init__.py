"""Language model providers for agents.

``LlmProvider`` is the small interface agents call; ``OpenAIProvider``
implements it on the official ``openai`` client. ``OpenAIProvider`` loads
lazily so that importing this package (for the Protocol, the response type
or the errors) imports neither ``openai`` nor Django.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envoy_django.llm.base import LlmError, LlmPermanentError, LlmProvider, LlmResponse, LlmRetryableError

if TYPE_CHECKING:
    from envoy_django.llm.openai_provider import OpenAIProvider

__all__ = ["LlmError", "LlmPermanentError", "LlmProvider", "LlmResponse", "LlmRetryableError", "OpenAIProvider"]


def __getattr__(name: str) -> Any:
    if name == "OpenAIProvider":
        from envoy_django.llm.openai_provider import OpenAIProvider

        return OpenAIProvider
    raise AttributeError(f"module 'envoy_django.llm' has no attribute {name!r}")
