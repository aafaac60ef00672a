"""The demo assistant's language model: a real OpenAI-compatible one, or an offline script.

Flows are built once per process at start-up (``flows.py``), but the agent's
model is called later, in whichever process runs the job: the ``envoy_demo``
command, ``runserver`` when the admin user approves a refund, an
``envoy_worker``, a ``manage.py shell``. ``DemoProvider`` therefore decides
and connects on first use, in that process. Without ``OPENAI_API_KEY`` and
``OPENAI_BASE_URL`` it starts the scripted server from
``envoy_django.testing.openai_server`` in a background thread of the current
process and points the ordinary ``OpenAIProvider`` at it, so the demo takes
the same code path as production (HTTP, the ``openai`` client) with no
network and no account.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

from django.conf import settings

from envoy_django.llm import LlmResponse, OpenAIProvider
from envoy_django.testing.openai_server import (
    Reply,
    ScriptedOpenAIServer,
    text_reply,
    tool_call_reply,
)

OFFLINE_MODEL = "envoy-demo-scripted"

_SUM = re.compile(r"(-?\d+(?:\.\d+)?)\s*\+\s*(-?\d+(?:\.\d+)?)")
_REFUND = re.compile(r"\brefund\b.*?\border\s*#?\s*(\d+)", re.IGNORECASE | re.DOTALL)
_NOT_RUN = ("Rejected by reviewer", "Not run", "Error")


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def demo_responder(messages: list[dict[str, Any]]) -> Reply:
    """A tiny deterministic "model" that knows the demo's two tools.

    "What is 2 + 2?" -> calls ``add``; "Please refund order 42" -> calls
    ``refund`` (which waits for the admin's approval); once the tool results
    are in, it answers from them. Anything else gets a hint.
    """
    if messages and messages[-1].get("role") == "tool":
        return text_reply(_answer_from_tool_results(messages))
    question = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    refund = _REFUND.search(question)
    if refund:
        return tool_call_reply(("refund", {"order_id": int(refund.group(1))}))
    total = _SUM.search(question)
    if total:
        return tool_call_reply(("add", {"a": _number(total.group(1)), "b": _number(total.group(2))}))
    return text_reply(
        "I am the demo's offline scripted model: I can add two numbers ('What is 2 + 2?') "
        "or refund an order ('Please refund order 42.')."
    )


def _answer_from_tool_results(messages: list[dict[str, Any]]) -> str:
    """Phrase the last batch of tool results, using the calls that asked for them."""
    results: list[dict[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.insert(0, message)
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except json.JSONDecodeError:
                arguments = {}
            calls[call.get("id", "")] = (function.get("name", ""), arguments)
    sentences = []
    for result in results:
        name, args = calls.get(result.get("tool_call_id", ""), ("", {}))
        content = str(result.get("content") or "")
        if name == "add":
            sentences.append(f"{args.get('a')} + {args.get('b')} = {content}.")
        elif name == "refund" and content.startswith(_NOT_RUN):
            sentences.append(f"I did not refund order {args.get('order_id')}: {content}")
        elif name == "refund":
            sentences.append(f"Done: {content}.")
        else:
            sentences.append(content)
    return " ".join(sentences)


class DemoProvider:
    """An ``LlmProvider`` that picks and connects its model on first use, per process.

    A real model when ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set (a
    local OpenAI-compatible server needs no key); otherwise the offline
    scripted one. A forked worker gets its own scripted server, since the
    parent's server thread does not survive a fork.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._provider: OpenAIProvider | None = None
        self._server: ScriptedOpenAIServer | None = None

    @staticmethod
    def offline() -> bool:
        """True when no model is configured, so the scripted one stands in."""
        return not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)

    def describe(self) -> str:
        """One line for the demo's console: which model answers, and where."""
        if self.offline():
            return ("offline scripted model (envoy_django.testing.openai_server, in this process; "
                    "set OPENAI_API_KEY for a real one)")
        where = settings.OPENAI_BASE_URL or "api.openai.com"
        return f"{settings.OPENAI_MODEL} at {where}"

    @property
    def provider(self) -> OpenAIProvider:
        with self._lock:
            if self._provider is None or self._pid != os.getpid():
                self._provider = self._connect()
                self._pid = os.getpid()
            return self._provider

    def _connect(self) -> OpenAIProvider:
        if not self.offline():
            return OpenAIProvider(api_key=settings.OPENAI_API_KEY or "not-needed",
                                  base_url=settings.OPENAI_BASE_URL or None, model=settings.OPENAI_MODEL)
        self._server = ScriptedOpenAIServer(responder=demo_responder).start()
        return OpenAIProvider(api_key="offline-demo", base_url=self._server.base_url, model=OFFLINE_MODEL,
                              max_retries=0)

    def generate(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **options: Any
    ) -> LlmResponse:
        return self.provider.generate(messages, tools=tools, **options)


provider = DemoProvider()
