"""Checks for what users hand the scheduler, to the limits its columns have.

One walk (``flow.values.find_invalid``) refuses what is not JSON, too deep,
an integer too long to write, or text PostgreSQL cannot store; then one
``json.dumps`` measures the size. SQLite would accept some of it, PostgreSQL
would not: the checks are the same on both, so a value that works on a
laptop works in production.
"""

from __future__ import annotations

import json
from typing import Any

from envoy_django.conf import envoy_settings
from envoy_django.exceptions import InvalidArgumentError, PayloadError, PayloadTooLargeError
from envoy_django.flow.values import find_invalid, short_repr


def check_payload(value: Any, what: str) -> None:
    """Raise if ``value`` cannot be stored or is larger than MAX_PAYLOAD_BYTES; ``what`` names it."""
    found = find_invalid(value, "", text=True)
    if found:
        raise PayloadError(f"{what} cannot be stored: {found}")
    check_size(value, what)


def check_size(value: Any, what: str) -> None:
    """Raise PayloadTooLargeError if ``value`` (known to be valid) exceeds MAX_PAYLOAD_BYTES."""
    limit = envoy_settings.MAX_PAYLOAD_BYTES
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if limit and size > limit:
        raise PayloadTooLargeError(f"{what} is {size} bytes of JSON, over ENVOY['MAX_PAYLOAD_BYTES'] ({limit})")


def check_text(value: Any, what: str) -> None:
    """Raise PayloadError if a string in ``value`` (a key or a value) could not be stored."""
    found = find_invalid(value, "", text=True)
    if found:
        raise PayloadError(f"{what} cannot be stored: {found}")


def check_name(value: Any, what: str, max_length: int, *, blank: bool = False) -> str:
    """``value`` if it is a string that fits its column (``max_length``) and can be stored; else raise."""
    if isinstance(value, str) and (blank or value) and len(value) <= max_length:
        if not find_invalid(value, what, text=True):
            return value
    raise InvalidArgumentError(
        f"{what} must be a{'' if blank else ' non-empty'} string of at most {max_length} characters "
        f"without NUL characters or surrogates, got {short_repr(value)}"
    )


def storable_text(text: str) -> str:
    """``text`` with NUL characters and surrogates escaped, for error messages and tracebacks."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
