"""Size and JSON checks for what users hand the scheduler."""

from __future__ import annotations

import json
import re
from typing import Any

from envoy_django.conf import envoy_settings
from envoy_django.exceptions import PayloadError, PayloadTooLargeError
from envoy_django.flow.context import find_non_json

# PostgreSQL stores no NUL character in text or jsonb, and a surrogate code
# point is not text (a lone one is refused; a pair reads back as one character).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_payload(value: Any, what: str) -> None:
    """Raise if ``value`` is not JSON or larger than MAX_PAYLOAD_BYTES; ``what`` names it."""
    found = find_non_json(value, "")
    if found:
        raise PayloadError(f"{what} is not JSON-serializable: {found or 'value'}")
    check_text(value, what)
    check_size(value, what)


def check_size(value: Any, what: str) -> None:
    """Raise PayloadTooLargeError if ``value`` (known to be JSON) exceeds MAX_PAYLOAD_BYTES."""
    limit = envoy_settings.MAX_PAYLOAD_BYTES
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if limit and size > limit:
        raise PayloadTooLargeError(f"{what} is {size} bytes of JSON, over ENVOY['MAX_PAYLOAD_BYTES'] ({limit})")


def check_text(value: Any, what: str) -> None:
    """Raise PayloadError if a string in ``value`` (a key or a value) could not be stored."""
    found = find_unstorable_text(value, "")
    if found:
        raise PayloadError(f"{what} cannot be stored: {found}")


def find_unstorable_text(value: Any, path: str) -> str | None:
    """The path of the first string, key or value, with a NUL character or a surrogate; or None."""
    if isinstance(value, str):
        return _text_problem(value, path or "value")
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = find_unstorable_text(item, f"{path}[{index}]")
            if found:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path} key {key!r}" if path else f"key {key!r}"
            found = (isinstance(key, str) and _text_problem(key, where)) or find_unstorable_text(
                item, f"{path}.{key}" if path else str(key)
            )
            if found:
                return found
    return None


def _text_problem(text: str, path: str) -> str | None:
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return f"{path} (contains a NUL character, which PostgreSQL cannot store)"
    return f"{path} (contains the surrogate {match.group()!r}, which is not text)"


def storable_text(text: str) -> str:
    """``text`` with NUL characters and surrogates escaped, for error messages and tracebacks."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
