"""Template filters for the Envoy admin pages; all return escaped HTML or plain text."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.utils.safestring import SafeString

from envoy_django.admin import display

register = template.Library()


@register.filter
def envoy_badge(status: str) -> SafeString:
    return display.badge(str(status))


@register.filter
def envoy_duration(value: dt.timedelta | None) -> str:
    return display.duration(value)


@register.filter
def envoy_short_id(value: Any) -> str:
    return display.short_id(value)


@register.filter
def envoy_json(value: Any) -> SafeString:
    return display.pretty_json(value)
