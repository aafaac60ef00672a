"""The values a checkpoint can hold, and the one walk that checks them.

A checkpoint must read back exactly as it was written, on any machine, and
every later step (copying, ``json.dumps``, PostgreSQL's jsonb, the admin's
pretty printer) must be able to handle it. So a value is refused, with the
path to the part at fault, when it is:

- not JSON: tuples, sets, objects, non-string keys, NaN and infinities;
- nested deeper than ``MAX_DEPTH`` (256) lists and dicts: deep enough for
  any real document, shallow enough for every recursive consumer, and a
  cycle is refused by the same rule;
- an integer of more than ``MAX_INT_DIGITS`` (4,300) digits, which Python
  itself refuses to write as text;
- (with ``text=True``) a string or key holding a NUL character or a lone
  surrogate, which PostgreSQL cannot store.

The walk is iterative, so no input can exhaust the interpreter's stack.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_DEPTH = 256
MAX_INT_DIGITS = 4300
_MAX_INT = 10**MAX_INT_DIGITS - 1
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
CLIP = 200


def find_invalid(value: Any, path: str = "", *, text: bool = False) -> str | None:
    """Where and why ``value`` cannot be held by a checkpoint (``"data.items[3] (...)"``); None if it can."""
    # Each entry: (item, depth, trail); a trail is (parent trail, key or index), so
    # the path is only spelled out for the part at fault.
    stack: list[tuple[Any, int, Any]] = [(value, 0, None)]
    while stack:
        item, depth, trail = stack.pop()
        if item is None or item is True or item is False:
            continue
        if isinstance(item, str):
            if text and _UNSTORABLE.search(item):
                return _text_problem(item, _path(path, trail))
        elif isinstance(item, int):  # bools were let through above
            if not -_MAX_INT <= item <= _MAX_INT:
                return f"{_path(path, trail)} (an integer of more than {MAX_INT_DIGITS} digits)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{_path(path, trail)} ({item!r} is not finite)"
        elif isinstance(item, list):
            if depth >= MAX_DEPTH:
                return f"{_path(path, trail)} (nested deeper than {MAX_DEPTH} levels, or a cycle)"
            # Pushed in reverse, so the first problem found is the first in reading order.
            for index in range(len(item) - 1, -1, -1):
                stack.append((item[index], depth + 1, (trail, index)))
        elif isinstance(item, dict):
            if depth >= MAX_DEPTH:
                return f"{_path(path, trail)} (nested deeper than {MAX_DEPTH} levels, or a cycle)"
            for key in item:
                if not isinstance(key, str):
                    return f"{_path(path, trail)} (key {short_repr(key, 50)} is not a string)"
                if text and _UNSTORABLE.search(key):
                    return _text_problem(key, f"{_path(path, trail)} key {short_repr(key, 50)}")
            for key, child in reversed(list(item.items())):
                stack.append((child, depth + 1, (trail, key)))
        else:
            return f"{_path(path, trail)} ({type(item).__name__} is not JSON)"
    return None


def _path(prefix: str, trail: Any) -> str:
    """``data.items[3]`` from a trail, each key and the whole cut short for a message."""
    parts: list[str] = []
    while trail is not None:
        trail, step = trail
        parts.append(f"[{step}]" if isinstance(step, int) else f".{clip(step, 50)}")
    path = prefix + "".join(reversed(parts))
    path = path[1:] if path.startswith(".") else path
    return clip(path) if path else "value"


def _text_problem(text: str, path: str) -> str:
    match = _UNSTORABLE.search(text)
    assert match is not None
    if match.group() == "\x00":
        return f"{path} (contains a NUL character, which PostgreSQL cannot store)"
    return f"{path} (contains the surrogate {match.group()!r}, which is not text)"


def json_equal(a: Any, b: Any) -> bool:
    """Whether two JSON values are the same document, as a database hands them back.

    PostgreSQL's jsonb keeps numbers as decimals: a float such as 1e300 comes
    back as an int. So numbers compare by value, whatever their Python type.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            try:
                return float(a) == float(b)
            except OverflowError:
                return False
        return a == b
    return False


def copy_json(value: Any) -> Any:
    """Deep-copy JSON data (checked by ``find_invalid``, so never deeper than MAX_DEPTH)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def clip(text: str, limit: int = CLIP) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was cut: for error messages."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def short_repr(value: Any, limit: int = CLIP) -> str:
    """``repr(value)`` for an error message, never longer than about ``limit`` characters."""
    if isinstance(value, str) and len(value) > limit:
        return clip(repr(value[: limit + 1]), limit)
    try:
        return clip(repr(value), limit)
    except Exception:  # a hostile __repr__, or one too deep to print
        return f"<{type(value).__name__}>"
