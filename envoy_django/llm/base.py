"""What an agent needs from a language model, independent of any vendor SDK.

Kept free of ``openai`` and Django so that agents (and their tests) can use
any object with a ``generate()`` method, and so that importing this module in
a web process costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from envoy_django.exceptions import EnvoyError


def empty_usage() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@dataclass
class LlmResponse:
    """One model turn, reduced to what an agent acts on.

    ``tool_calls`` items are ``{"id", "name", "arguments"}`` with
    ``arguments`` already decoded to a dict; when the model sent arguments
    that are not a JSON object, the item also has ``"error"`` (the agent
    hands that back to the model instead of calling the tool).
    ``finish_reason`` is the provider's raw value ("stop", "tool_calls", ...).
    """

    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=empty_usage)
    finish_reason: str | None = None


@runtime_checkable
class LlmProvider(Protocol):
    """A chat model that may call tools.

    ``messages`` use the Chat Completions shape (``{"role", "content"}``,
    assistant ``tool_calls``, ``tool`` results with ``tool_call_id``), which
    most vendors accept or translate. ``tools`` items are
    ``{"name", "description", "parameters"}`` with ``parameters`` as JSON
    Schema; the provider wraps them in its own wire format. ``options``
    (temperature, model, ...) pass through to the vendor call.

    Raise ``LlmPermanentError`` for failures a retry cannot fix and
    ``LlmRetryableError`` for passing ones.
    """

    def generate(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **options: Any
    ) -> LlmResponse: ...


class LlmError(Exception):
    """A language model call failed."""

    def __init__(self, message: str, *, model: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.status = status


class LlmPermanentError(LlmError, EnvoyError):
    """A model call failed in a way retrying cannot fix (bad key, bad request, unknown model).

    It is an ``EnvoyError`` so that the flow engine turns it into a
    ``FlowError`` when a handler raises it: the scheduler then fails the job
    at once instead of burning retries (and money) on it.
    """


class LlmRetryableError(LlmError):
    """A model call failed for a passing reason (rate limit, timeout, server error).

    A plain exception on purpose: the engine wraps it in ``HandlerError`` and
    the scheduler retries the phase with backoff.
    """
