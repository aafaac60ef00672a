"""Template filters and tags for the Envoy admin pages; all return escaped HTML or plain text."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django
from django import template
from django.contrib.admin.templatetags.admin_urls import admin_urlname
from django.urls import reverse
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext

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


@register.filter
def envoy_note(note: Any) -> SafeString:
    return display.note(note)


@register.inclusion_tag("admin/envoy_django/breadcrumbs.html", takes_context=True)
def envoy_breadcrumbs(context: Any, current: str, object_label: str | None = None,
                      object_url: str | None = None, model_list: bool = True) -> dict[str, Any]:
    """Home > app > model list [> object] > ``current``, in the markup of the running Django's admin.

    Django 6.1 turned the admin's breadcrumbs from a ``<div>`` into an ``<ol>``
    and styles only the list, so custom pages follow whichever it uses.
    """
    opts = context["opts"]
    crumbs: list[tuple[Any, str | None]] = [
        (gettext("Home"), reverse("admin:index")),
        (opts.app_config.verbose_name, reverse("admin:app_list", kwargs={"app_label": opts.app_label})),
    ]
    if model_list:  # False on the overview page: it is its own model list
        crumbs.append((capfirst(opts.verbose_name_plural), reverse(admin_urlname(opts, SafeString("changelist")))))
    if object_label is not None:
        crumbs.append((object_label, object_url))
    return {"crumbs": crumbs, "current": current, "as_list": django.VERSION >= (6, 1)}
