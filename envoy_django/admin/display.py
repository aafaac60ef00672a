"""Small HTML fragments the job and escalation pages share.

Every value that reaches HTML here goes through ``format_html`` (which
escapes): job data, messages and labels may carry model output.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

# Statuses of jobs, waits and escalations that have a badge colour in admin.css.
_BADGES = {
    "pending", "running", "blocking", "done", "failed", "cancelled",
    "resolved", "approved", "rejected", "timeout",
}


def badge(status: str) -> SafeString:
    """A status as a coloured label; unknown statuses get the neutral colour."""
    kind = status if status in _BADGES else "other"
    return format_html('<span class="envoy-badge envoy-badge--{}">{}</span>', kind, status)


def short_id(value: Any) -> str:
    """The first block of a UUID: enough to tell jobs apart on one screen."""
    return str(value).split("-", 1)[0]


def change_url(site_name: str, model: str, pk: Any) -> str:
    return reverse(f"{site_name}:envoy_django_{model}_change", args=[pk])


def changelist_url(site_name: str, model: str, **params: Any) -> str:
    url = reverse(f"{site_name}:envoy_django_{model}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def job_link(site_name: str, job_id: Any, text: str | None = None) -> SafeString:
    return format_html(
        '<a href="{}" title="{}"><code>{}</code></a>',
        change_url(site_name, "job", job_id), str(job_id), text or short_id(job_id),
    )


def pretty_json(value: Any) -> SafeString:
    """Indented JSON in a <pre>, escaped."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return format_html('<pre class="envoy-pre">{}</pre>', text)


def preformatted(text: str) -> SafeString:
    return format_html('<pre class="envoy-pre">{}</pre>', text)


def timestamp(value: dt.datetime | None) -> str:
    """``2026-01-31 14:05:09`` in the current time zone: compact enough for table columns."""
    return f"{localtime(value):%Y-%m-%d %H:%M:%S}" if value else "-"


def duration(value: dt.timedelta | None) -> str:
    """``0.4 ms``, ``850 ms``, ``12.3 s``, ``4 min 5 s``, ``2 h 3 min``, ``3 d 4 h``."""
    if value is None:
        return "-"
    seconds = max(value.total_seconds(), 0.0)
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def progress_bar(fraction: float, title: str, text: str) -> SafeString:
    """A bar ``fraction`` (0..1) full, with ``text`` beside it and ``title`` on hover."""
    percent = round(min(max(fraction, 0.0), 1.0) * 100)
    return format_html(
        '<span class="envoy-progress" title="{}"><span class="envoy-progress__bar">'
        '<span class="envoy-progress__fill" style="width: {}%"></span></span>'
        '<span class="envoy-progress__text">{}</span></span>',
        title, percent, text,
    )


def note(value: Any) -> SafeString:
    """A step's note (``ctx.note(kind, **details)``): its kind, then its details as compact JSON."""
    if not isinstance(value, dict):
        return format_html('<div class="envoy-note">{}</div>', json.dumps(value, ensure_ascii=False, default=str))
    details = {key: item for key, item in value.items() if key != "kind"}
    return format_html(
        '<div class="envoy-note"><span class="envoy-note__kind">{}</span> <code>{}</code></div>',
        value.get("kind", "note"), json.dumps(details, ensure_ascii=False, default=str),
    )
