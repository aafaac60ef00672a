"""The "Envoy overview" page: listed with the models, for anyone who may view jobs.

A proxy model gives it its place in the admin index and its URL; its
changelist is this page instead of a list. The numbers come from
``envoy_django.overview``; the chart is inline SVG, no script, no CDN.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from envoy_django.models import Overview
from envoy_django.overview import Minute, overview

CHART_WIDTH, CHART_HEIGHT, BAR = 600, 120, 10


def throughput_svg(minutes: list[Minute]) -> SafeString:
    """A bar per minute: done stacked under failed (and cancelled); the tallest minute fills the height."""
    peak = max((m.done + m.failed + m.cancelled for m in minutes), default=0) or 1
    bars = []
    for i, minute in enumerate(minutes):
        x, bottom = i * BAR, CHART_HEIGHT
        for kind, count in (("done", minute.done), ("failed", minute.failed), ("cancelled", minute.cancelled)):
            if not count:
                continue
            height = max(round(count * (CHART_HEIGHT - 14) / peak), 1)
            bottom -= height
            bars.append((kind, x, bottom, BAR - 2, height,
                         f"{minute.at:%H:%M} UTC: {count} {kind}"))
    title = _("Jobs finished per minute over the last hour (peak %(peak)s)") % {"peak": peak}
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="envoy-chart" viewBox="0 0 {} {}" role="img" '
        'aria-label="{}"><title>{}</title>{}<text x="0" y="10" class="envoy-chart__label">{}</text></svg>',
        CHART_WIDTH, CHART_HEIGHT, title, title,
        format_html_join("", '<rect class="envoy-chart__{}" x="{}" y="{}" width="{}" height="{}">'
                             '<title>{}</title></rect>', bars),
        peak,
    )


@admin.register(Overview)
class OverviewAdmin(admin.ModelAdmin):
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("envoy_django.view_job")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        data = overview()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Envoy overview"),
            "overview": data,
            "chart": throughput_svg(data.minutes),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/envoy_django/overview/overview.html", context)
