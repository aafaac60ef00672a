"""Cron schedules in the admin: edit them, see the next run, pause and resume.

Saving goes through ``scheduler.add_schedule``, as code would, so the form
refuses what the API refuses (an invalid cron expression, an unknown time
zone or flow) with the same message, on the field at fault, and the next
run is computed the same way.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from envoy_django import scheduler
from envoy_django.exceptions import EnvoyError, UnknownFlowError
from envoy_django.models import Schedule
from envoy_django.scheduler.schedules import check_schedule


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = ("name", "flow", "cron", "timezone", "input", "enabled")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            check_schedule(data["name"], data["cron"], data["timezone"])
        except EnvoyError as exc:
            self.add_error("timezone" if "timezone" in str(exc) else "cron", str(exc))
        try:
            from envoy_django.registry import get_flow

            get_flow(data["flow"])
        except UnknownFlowError as exc:
            self.add_error("flow", str(exc))
        return data


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ("name", "flow", "cron", "timezone", "enabled", "next_run_at", "last_run_at", "last_job")
    list_filter = ("enabled",)
    search_fields = ("name", "flow")
    readonly_fields = ("next_run_at", "last_run_at", "last_job", "created_at", "updated_at")
    actions = ("pause", "resume")

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        if change and form.initial.get("name") not in (None, obj.name):
            Schedule.objects.filter(name=form.initial["name"]).update(name=obj.name)  # a rename keeps the row
        saved = scheduler.add_schedule(obj.name, obj.flow, obj.cron, input=obj.input, timezone=obj.timezone,
                                       enabled=obj.enabled)
        obj.pk, obj.next_run_at = saved.pk, saved.next_run_at

    @admin.action(description=_("Pause selected schedules"), permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, False)

    @admin.action(description=_("Resume selected schedules"), permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, True)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Schedule], enabled: bool) -> None:
        count = 0
        for row in queryset:
            try:
                scheduler.add_schedule(row.name, row.flow, row.cron, input=row.input, timezone=row.timezone,
                                       enabled=enabled)
            except EnvoyError as exc:  # its flow is gone, say: that one stays as it was
                self.message_user(request, str(exc), messages.ERROR)
            else:
                count += 1
        text = (ngettext("Resumed %(count)d schedule.", "Resumed %(count)d schedules.", count) if enabled
                else ngettext("Paused %(count)d schedule.", "Paused %(count)d schedules.", count))
        self.message_user(request, text % {"count": count}, messages.SUCCESS)
