"""A scripted, offline stand-in for the OpenAI Chat Completions endpoint.

Tests point the real ``openai`` client at it (``base_url=server.base_url``),
so the whole path - request building, retries, error classes, response
parsing - is exercised without the internet or an API key. It serves a
queue of scripted replies, or asks a ``responder`` callable (a tiny
deterministic "model" for demos), and records every request body so a test
can assert exactly what the model was sent.

Standard library only: ``http.server`` on 127.0.0.1, a free port, one
background thread. Example::

    with ScriptedOpenAIServer([tool_call_reply(("add", {"a": 2, "b": 2})), text_reply("4")]) as server:
        provider = OpenAIProvider(api_key="test", base_url=server.base_url)
        ...
        assert server.requests[1]["messages"][-1]["role"] == "tool"
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = dict[str, Any]
Responder = Callable[[list[dict[str, Any]]], Reply]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_denied", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
}


# --- building replies ----------------------------------------------------------


def text_reply(text: str, *, usage: dict[str, int] | None = None, finish_reason: str = "stop",
               pieces: list[str] | None = None, hold: threading.Event | None = None) -> Reply:
    """The assistant answers with text.

    Streamed (``stream: true`` requests), the text goes out in ``pieces``
    (default: word by word); with ``hold``, the server sends the first half
    of them, then waits for the event before the rest, so a test can look
    at what a reader sees mid-call.
    """
    return {"text": text, "usage": usage, "finish_reason": finish_reason, "pieces": pieces, "hold": hold}


def tool_call_reply(*calls: tuple[str, Any] | dict[str, Any], text: str | None = None,
                    usage: dict[str, int] | None = None) -> Reply:
    """The assistant calls one or more tools in one turn (parallel tool calls).

    Each call is ``(name, arguments)`` or ``{"name", "arguments", "id"}``;
    arguments given as a string are sent verbatim (to script broken JSON).
    """
    normalized = []
    for call in calls:
        if isinstance(call, tuple):
            name, arguments = call
            call = {"name": name, "arguments": arguments}
        normalized.append(dict(call))
    return {"text": text, "tool_calls": normalized, "usage": usage, "finish_reason": "tool_calls"}


def error_reply(status: int, message: str | None = None, *, retry_after_ms: int | None = 1,
                headers: dict[str, str] | None = None) -> Reply:
    """An HTTP error in OpenAI's shape (429, 401, 500, ...).

    ``retry_after_ms`` becomes a ``retry-after-ms`` header, which the openai
    client obeys: retries in tests then take a millisecond, not seconds.
    """
    return {"status": status, "message": message or f"scripted HTTP {status}",
            "retry_after_ms": retry_after_ms, "headers": dict(headers or {})}


# --- a tiny offline "model" for demos ------------------------------------------------

_SUM = re.compile(r"(-?\d+(?:\.\d+)?)\s*\+\s*(-?\d+(?:\.\d+)?)")


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def arithmetic_responder(messages: list[dict[str, Any]]) -> Reply:
    """Answers "What is 2 + 2?" by calling an ``add`` tool ``{"a", "b"}``, then reports the result.

    Deterministic and offline, so a demo of a tool-calling agent runs
    without an API key.
    """
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(str(message.get("content")))
    if results:
        return text_reply(f"The answer is {', '.join(reversed(results))}.")
    question = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    match = _SUM.search(question)
    if not match:
        return text_reply("I can only add two numbers; ask me e.g. 'What is 2 + 2?'")
    return tool_call_reply(("add", {"a": _number(match.group(1)), "b": _number(match.group(2))}))


# --- the server ---------------------------------------------------------------------


class ScriptedOpenAIServer:
    """``POST /v1/chat/completions`` answered from a script, as JSON or (``stream: true``) as server-sent events.

    Replies come from the queue first (``add()``), then from ``responder``
    if given; with neither left, the server answers 500 with
    ``x-should-retry: false`` so a test fails fast and says why.
    ``requests`` holds every JSON body received, in order, including the
    ones answered with an error (so client retries are visible).
    """

    def __init__(self, script: Iterable[Reply] = (), *, responder: Responder | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self._script: list[Reply] = list(script)
        self._lock = threading.Lock()
        self._address = (host, port)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- script -----------------------------------------------------------

    def add(self, *replies: Reply) -> ScriptedOpenAIServer:
        """Queue replies, served one per request in order."""
        with self._lock:
            self._script.extend(replies)
        return self

    @property
    def remaining(self) -> int:
        """Scripted replies not served yet."""
        with self._lock:
            return len(self._script)

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> ScriptedOpenAIServer:
        if self._httpd is not None:
            raise RuntimeError("the scripted OpenAI server is already running")
        httpd = ThreadingHTTPServer(self._address, _Handler)
        httpd.owner = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="scripted-openai-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (no ResourceWarning left behind)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ScriptedOpenAIServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the scripted OpenAI server is not running; call start()")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for ``OpenAIProvider(base_url=...)``."""
        return f"http://{self._address[0]}:{self.port}/v1"

    # --- answering ---------------------------------------------------------------

    def _next_reply(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Reply]:
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers)
            number = len(self.requests)
            if self._script:
                return number, self._script.pop(0)
        if self.responder is not None:
            return number, self.responder(list(body.get("messages") or []))
        return number, {"status": 500, "message": f"the scripted OpenAI server has no reply for request {number}",
                        "retry_after_ms": None, "headers": {"x-should-retry": "false"}}

    def _completion(self, number: int, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        calls = []
        for index, call in enumerate(reply.get("tool_calls") or []):
            arguments = call.get("arguments", {})
            calls.append({
                "id": call.get("id") or f"call_{number}_{index}",
                "type": "function",
                "function": {"name": call["name"],
                             "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
            })
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("text")}
        if calls:
            message["tool_calls"] = calls
        usage = reply.get("usage")
        if usage is None:  # a rough, deterministic estimate (about four characters a token)
            prompt = max(1, len(json.dumps(body.get("messages") or [])) // 4)
            completion = max(1, len(json.dumps(message)) // 4)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        return {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "scripted",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": reply.get("finish_reason") or ("tool_calls" if calls else "stop")}],
            "usage": usage,
        }


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so stopping never waits on an idle keep-alive.
    server_version = "ScriptedOpenAI/1.0"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        owner: ScriptedOpenAIServer = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._send(400, {"error": {"message": f"body is not JSON: {exc}", "type": "invalid_request_error"}})
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            number, reply = owner._next_reply(body, headers)
        except Exception as exc:  # a broken responder: say so rather than hang the client
            self._send(500, {"error": {"message": f"responder raised {type(exc).__name__}: {exc}",
                                       "type": "server_error"}}, {"x-should-retry": "false"})
            return
        status = int(reply.get("status") or 200)
        if status >= 400:
            kind, code = _ERROR_TYPES.get(status, ("server_error", None))
            extra = dict(reply.get("headers") or {})
            if reply.get("retry_after_ms") is not None:
                extra.setdefault("retry-after-ms", str(reply["retry_after_ms"]))
            self._send(status, {"error": {"message": reply.get("message"), "type": kind,
                                          "param": None, "code": code}}, extra)
            return
        completion = owner._completion(number, body, reply)
        if body.get("stream"):
            self._stream(completion, reply, bool((body.get("stream_options") or {}).get("include_usage")))
        else:
            self._send(200, completion, dict(reply.get("headers") or {}))

    def _stream(self, completion: dict[str, Any], reply: Reply, include_usage: bool) -> None:
        """The completion as Chat Completions chunks: text pieces, then tool calls, the finish, the usage."""
        message = completion["choices"][0]["message"]
        base = {key: completion[key] for key in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

        text = message.get("content") or ""
        pieces = reply.get("pieces") or [word for word in re.split(r"(?<= )", text) if word]
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in pieces]
        for index, call in enumerate(message.get("tool_calls") or []):
            events.append(chunk({"tool_calls": [{"index": index, **call}]}))
        events.append(chunk({}, completion["choices"][0]["finish_reason"]))
        if include_usage:
            events.append({**base, "choices": [], "usage": completion["usage"]})
        hold_at = 1 + (len(pieces) + 1) // 2 if reply.get("hold") is not None else None
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for number, event in enumerate(events):
                if number == hold_at:
                    reply["hold"].wait(60)
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client went away (timed out, or its process was killed
            # mid-request in a crash test): nobody is left to answer.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``requests`` instead of a log on stderr."""
