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
    """The path of the first part of ``value`` a checkpoint cannot hold, with why; None if all is well."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if item is None or item is True or item is False:
            continue
        if isinstance(item, str):
            if text and _UNSTORABLE.search(item):
                return _text_problem(item, where or "value")
        elif isinstance(item, int):  # bools were let through above
            if not -_MAX_INT <= item <= _MAX_INT:
                return f"{where or 'value'} (an integer of more than {MAX_INT_DIGITS} digits)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where or 'value'} ({item!r} is not finite)"
        elif isinstance(item, (list, dict)):
            if depth >= MAX_DEPTH:
                return f"{where or 'value'} (nested deeper than {MAX_DEPTH} levels, or a cycle)"
            if isinstance(item, list):
                # Pushed in reverse, so the first problem found is the first in reading order.
                for index in range(len(item) - 1, -1, -1):
                    stack.append((item[index], f"{where}[{index}]", depth + 1))
            else:
                entries = list(item.items())
                for key, child in reversed(entries):
                    if not isinstance(key, str):
                        return f"{where or 'value'} (key {clip(repr(key))} is not a string)"
                    if text and _UNSTORABLE.search(key):
                        return _text_problem(key, f"{where} key {clip(repr(key))}" if where else f"key {clip(repr(key))}")
                    stack.append((child, f"{where}.{key}" if where else key, depth + 1))
        else:
            return f"{where or 'value'} ({type(item).__name__} is not JSON)"
    return None


def _text_problem(text: str, path: str) -> str:
    match = _UNSTORABLE.search(text)
    assert match is not None
    if match.group() == "\x00":
        return f"{path} (contains a NUL character, which PostgreSQL cannot store)"
    return f"{path} (contains the surrogate {match.group()!r}, which is not text)"


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
