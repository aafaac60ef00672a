"""``OpenAIProvider``: the ``LlmProvider`` on the official ``openai`` client.

The only module that imports ``openai``; the flow engine and agents never do,
so a project without the SDK (or a test with a fake provider) still works.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, cast

from envoy_django.exceptions import MissingExtraError

try:
    import openai
except ImportError as exc:
    raise MissingExtraError("openai", "OpenAIProvider") from exc

from openai.types.chat import ChatCompletionMessageParam  # noqa: E402  (after the extra's check)

from envoy_django.llm.base import LlmError, LlmPermanentError, LlmResponse, LlmRetryableError

# Statuses the openai client itself retries; they stay retryable for the
# scheduler once the client's own retries are used up.
_RETRYABLE_STATUSES = {408, 409, 429}


class OpenAIProvider:
    """Chat Completions with native function tools.

    ``api_key``/``base_url`` default to the client's own environment variables
    (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``); ``base_url`` also points it at
    any compatible server (a local model, ``envoy_django.testing.openai_server``).
    ``max_retries`` and ``timeout`` go to the client, which retries 408/409/429/5xx
    itself before this provider raises ``LlmRetryableError``. Other ``options``
    (temperature, max_tokens, ...) go to every ``create()`` call.

    ``stream`` (the default): the completion is streamed, and inside a job
    its text so far is published for the job page (``envoy_django.streaming``);
    the result is the same message either way.

    The client is made on first use, so a provider can be built in a
    ``flows.py`` at start-up without a key being present yet. A process
    forked after that use (``envoy_worker`` forks its workers) makes its own
    client instead of sharing the parent's open connections.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = "gpt-4.1-mini",
        client: openai.OpenAI | None = None,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
        stream: bool = True,
        **options: Any,
    ) -> None:
        self.model = model
        self.stream = stream
        self.options = options
        self._client_kwargs: dict[str, Any] = {}
        for key, value in (("api_key", api_key), ("base_url", base_url),
                           ("max_retries", max_retries), ("timeout", timeout)):
            if value is not None:
                self._client_kwargs[key] = value
        self._client = client
        # A client handed in belongs to the caller, who closes it.
        self._owns_client = client is None
        self._client_pid = os.getpid()
        self._inherited_client: openai.OpenAI | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is not None and self._owns_client and self._client_pid != os.getpid():
                # Forked: the connection pool belongs to the parent. Keep it
                # referenced, unused and unclosed (closing or collecting it
                # here would tear down sockets the parent still uses).
                self._inherited_client = self._client
                self._client = None
            if self._client is None:
                self._client_pid = os.getpid()
                try:
                    self._client = openai.OpenAI(**self._client_kwargs)
                except openai.OpenAIError as exc:  # e.g. no API key configured
                    raise LlmPermanentError(
                        f"cannot create the OpenAI client for model {self.model!r}: {exc}", model=self.model
                    ) from exc
            return self._client

    def generate(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **options: Any
    ) -> LlmResponse:
        params = {**self.options, **options}
        model = params.pop("model", self.model)
        if tools:
            params["tools"] = [_function_tool(tool) for tool in tools]
        try:
            # Messages are plain dicts in the Chat Completions shape (they are checkpointed as JSON).
            if self.stream:
                return self._streamed(model, messages, params)
            completion = self.client.chat.completions.create(
                model=model, messages=cast(list[ChatCompletionMessageParam], messages), **params
            )
        except openai.OpenAIError as exc:
            raise translate_error(exc, model) from exc
        if not completion.choices:
            raise LlmRetryableError(f"model {model!r} returned no choices", model=model)
        choice = completion.choices[0]
        message = choice.message
        tool_calls = []
        for call in message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is None:  # custom (non-function) tools are not offered, so never asked for
                continue
            tool_calls.append(_decode_call(call.id, function.name, function.arguments))
        return LlmResponse(text=message.content, tool_calls=tool_calls, usage=_usage(completion.usage),
                           finish_reason=choice.finish_reason)

    def _streamed(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> LlmResponse:
        """The same response, read chunk by chunk; the text so far is published as it comes."""
        from envoy_django.streaming import Publisher

        publisher = Publisher()
        calls: dict[int, dict[str, str]] = {}
        finish_reason: str | None = None
        usage: Any = None
        chose = False
        try:
            with self.client.chat.completions.create(
                model=model, messages=cast(list[ChatCompletionMessageParam], messages), stream=True,
                stream_options={"include_usage": True}, **params,
            ) as chunks:
                for chunk in chunks:
                    usage = chunk.usage or usage
                    if not chunk.choices:
                        continue
                    chose = True
                    choice = chunk.choices[0]
                    finish_reason = choice.finish_reason or finish_reason
                    delta = choice.delta
                    publisher.add(delta.content or "")
                    for call in delta.tool_calls or []:
                        entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        entry["id"] = call.id or entry["id"]
                        if call.function is not None:
                            entry["name"] += call.function.name or ""
                            entry["arguments"] += call.function.arguments or ""
        finally:
            publisher.close()
        if not chose:
            raise LlmRetryableError(f"model {model!r} returned no choices", model=model)
        tool_calls = [_decode_call(entry["id"], entry["name"], entry["arguments"] or None)
                      for _, entry in sorted(calls.items())]
        return LlmResponse(text=publisher.text or None, tool_calls=tool_calls, usage=_usage(usage),
                           finish_reason=finish_reason)

    def close(self) -> None:
        """Close the HTTP connections of a client this provider created."""
        with self._lock:
            if self._client is not None and self._owns_client:
                self._client.close()
                self._client = None

    def __enter__(self) -> OpenAIProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self._client_kwargs.get("base_url", "default endpoint")
        return f"<OpenAIProvider model={self.model!r} {where}>"


def _usage(usage: Any) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "total_tokens": usage.total_tokens if usage else 0,
    }


def _function_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Wrap a neutral ``{"name", "description", "parameters"}`` tool; pass OpenAI-shaped ones through."""
    if "type" in tool:
        return tool
    parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    function: dict[str, Any] = {"name": tool["name"], "parameters": parameters}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _decode_call(call_id: str, name: str, arguments: str | None) -> dict[str, Any]:
    """Arguments are JSON text written by the model, so they may be broken; say so instead of raising."""
    call: dict[str, Any] = {"id": call_id, "name": name, "arguments": {}}
    text = arguments or ""
    try:
        decoded = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        call["error"] = f"arguments are not valid JSON ({exc}): {text[:200]!r}"
        return call
    if not isinstance(decoded, dict):
        call["error"] = f"arguments must be a JSON object, got {text[:200]!r}"
        return call
    call["arguments"] = decoded
    return call


def translate_error(exc: openai.OpenAIError, model: str) -> LlmError:
    """Sort the client's exceptions into retryable and permanent, naming model and status."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    detail = body.get("message") if isinstance(body, dict) and body.get("message") else str(exc)
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return LlmRetryableError(
            f"OpenAI call for model {model!r} failed: {type(exc).__name__}: {detail}", model=model
        )
    if isinstance(exc, openai.APIStatusError):
        text = f"OpenAI call for model {model!r} failed with HTTP {status} ({type(exc).__name__}): {detail}"
        if isinstance(exc, (openai.RateLimitError, openai.InternalServerError)) or status in _RETRYABLE_STATUSES:
            return LlmRetryableError(text, model=model, status=status)
        # 400 BadRequest, 401 Authentication, 403 PermissionDenied, 404 NotFound, 422 ...
        return LlmPermanentError(text + " (not retried: fix the key, model or request)", model=model, status=status)
    return LlmPermanentError(
        f"OpenAI call for model {model!r} failed: {type(exc).__name__}: {detail}", model=model, status=status
    )
