"""Size and JSON checks for what users hand the scheduler."""

from __future__ import annotations

import json
from typing import Any

from envoy_django.conf import envoy_settings
from envoy_django.exceptions import PayloadError, PayloadTooLargeError
from envoy_django.flow.context import find_non_json


def check_payload(value: Any, what: str) -> None:
    """Raise if ``value`` is not JSON or larger than MAX_PAYLOAD_BYTES; ``what`` names it."""
    found = find_non_json(value, "")
    if found:
        raise PayloadError(f"{what} is not JSON-serializable: {found or 'value'}")
    limit = envoy_settings.MAX_PAYLOAD_BYTES
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if limit and size > limit:
        raise PayloadTooLargeError(f"{what} is {size} bytes of JSON, over ENVOY['MAX_PAYLOAD_BYTES'] ({limit})")
