"""The job admin: a changelist that stays fast at a million rows, and a read-only job page.

Nothing here writes a job row: the page is read-only and the actions
(``job_actions.py``) go through the scheduler, which owns every transition.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime

from envoy_django import registry
from envoy_django.admin import display
from envoy_django.admin.job_actions import cancel_jobs, fail_jobs, retry_jobs
from envoy_django.admin.pagination import EstimatedCountMixin
from envoy_django.exceptions import UnknownFlowError
from envoy_django.flow.svg import graph_to_svg
from envoy_django.models import Escalation, Job, JobStatus, Step, Wait

# Columns the changelist shows; the checkpoint (context), payloads and
# tracebacks can be large and are not loaded for a list of a hundred jobs.
LIST_FIELDS = (
    "id", "flow", "status", "state", "step", "max_steps", "progress", "progress_message",
    "parent", "created_at", "updated_at", "started_at", "finished_at",
)
CHILDREN_SHOWN = 100


class FlowFilter(admin.SimpleListFilter):
    """Flows from the registry: no DISTINCT over the job table to find them."""

    title = "flow"
    parameter_name = "flow"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(registry.registered())]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        # Any value, registered or not: links to jobs of a retired flow still work.
        return queryset.filter(flow=self.value()) if self.value() else queryset


class JobChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        return super().get_queryset(request, exclude_parameters).only(*LIST_FIELDS)


@admin.register(Job)
class JobAdmin(EstimatedCountMixin, admin.ModelAdmin):
    list_display = (
        "job_id", "flow", "status_badge", "state", "step_progress", "parent_link",
        "created", "updated", "duration_display",
    )
    list_display_links = ("job_id",)
    list_filter = ("status", FlowFilter, ("created_at", admin.DateFieldListFilter))
    # The box needs search_fields; get_search_results decides the lookup.
    search_fields = ("flow",)
    search_help_text = "A job's full id, or the start of a registered flow's name (a retired flow's full name)."
    # Matches the index envoy_job_created; the only sortable column uses it too.
    ordering = ("-created_at", "-id")
    sortable_by = ("created",)
    list_select_related = False
    show_facets = admin.ShowFacets.NEVER  # facets are COUNT(*)s per filter choice
    actions = (cancel_jobs, fail_jobs, retry_jobs)
    change_form_template = "admin/envoy_django/job/change_form.html"
    fail_jobs_template = "admin/envoy_django/job/fail_jobs.html"
    summary_fields = ("id", "flow_link", "status_badge", "current_state", "step_progress", "created_at", "ran")
    # Shown only when set, to keep the summary beside the picture short.
    optional_fields = {
        "parent_link": "parent_id", "attempts": "attempts", "progress_message": "progress_message",
        "run_after": "run_after", "idempotency_key": "idempotency_key", "lease": "lease_owner",
    }
    payload_fields = ("input_json", "output_json", "data_json")
    error_fields = ("error_text", "traceback_text")
    readonly_fields = (*summary_fields, *optional_fields, *payload_fields, *error_fields)

    class Media:
        css = {"all": ["envoy_django/admin.css"]}

    # --- permissions: read-only rows, operations through the scheduler -------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return request.user.is_superuser

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Cancel, fail and retry: for users who may change jobs."""
        return request.user.has_perm("envoy_django.change_job")

    # --- the changelist -------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """An exact id, or flows by name prefix: both lookups an index answers.

        The prefix is matched against the registry, not with LIKE, which
        PostgreSQL can only serve from a B-tree index under the C collation.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            job_id = uuid.UUID(term)
        except ValueError:
            names = {name for name in registry.registered() if name.startswith(term)} | {term}
            return queryset.filter(flow__in=sorted(names)), False
        return queryset.filter(pk=job_id), False

    @admin.display(description="id")
    def job_id(self, job: Job) -> SafeString:
        return format_html('<code title="{}">{}</code>', str(job.pk), display.short_id(job.pk))

    @admin.display(description="status")
    def status_badge(self, job: Job) -> SafeString:
        return display.badge(job.status)

    @admin.display(description="step")
    def step_progress(self, job: Job) -> SafeString:
        """The flow's own progress when it reports one, else the step of at most max_steps."""
        if job.progress is not None:
            return display.progress_bar(job.progress, job.progress_message or f"{job.progress:.0%}",
                                        f"{job.progress:.0%}")
        fraction = 1.0 if job.status == JobStatus.DONE else job.step / max(job.max_steps, 1)
        return display.progress_bar(fraction, f"step {job.step} of at most {job.max_steps}",
                                    f"{job.step}/{job.max_steps}")

    @admin.display(description="parent")
    def parent_link(self, job: Job) -> SafeString | str:
        return display.job_link(self.admin_site.name, job.parent_id) if job.parent_id else "-"

    @admin.display(description="created", ordering="created_at")
    def created(self, job: Job) -> str:
        return display.timestamp(job.created_at)

    @admin.display(description="updated")
    def updated(self, job: Job) -> str:
        return display.timestamp(job.updated_at)

    @admin.display(description="duration")
    def duration_display(self, job: Job) -> str:
        return display.duration(job.duration)

    # --- the job page -----------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Job | None = None) -> list[tuple[str | None, dict]]:
        summary = list(self.summary_fields)
        if obj is not None:
            summary += [name for name, attr in self.optional_fields.items() if getattr(obj, attr)]
        fieldsets: list[tuple[str | None, dict]] = [
            (None, {"fields": summary}),
            ("Input, output and data", {"fields": self.payload_fields}),
        ]
        if obj is not None and (obj.error or obj.traceback):
            fieldsets.append(("Error", {"fields": self.error_fields}))
        return fieldsets

    @admin.display(description="flow")
    def flow_link(self, job: Job) -> SafeString:
        url = display.changelist_url(self.admin_site.name, "job", flow=job.flow)
        return format_html('<a href="{}" title="Jobs of this flow">{}</a>', url, job.flow)

    @admin.display(description="state")
    def current_state(self, job: Job) -> str:
        return job.state or "-"

    @admin.display(description="ran")
    def ran(self, job: Job) -> str:
        """Start, end and duration on one line: the times that matter side by side."""
        if not job.started_at:
            return "not started" + (f", due {display.timestamp(job.run_after)}" if job.run_after else "")
        if not job.finished_at:
            return f"since {display.timestamp(job.started_at)} ({display.duration(job.duration)} so far)"
        return (f"{display.timestamp(job.started_at)} \u2192 {localtime(job.finished_at):%H:%M:%S} "
                f"({display.duration(job.duration)})")

    @admin.display(description="lease")
    def lease(self, job: Job) -> str:
        if not job.lease_owner:
            return "-"
        until = f" until {display.timestamp(job.lease_expires_at)}" if job.lease_expires_at else ""
        return job.lease_owner + until

    @admin.display(description="input")
    def input_json(self, job: Job) -> SafeString:
        return display.pretty_json(job.input)

    @admin.display(description="output")
    def output_json(self, job: Job) -> SafeString:
        return display.pretty_json(job.output)

    @admin.display(description="data")
    def data_json(self, job: Job) -> SafeString:
        return display.pretty_json((job.context or {}).get("data", {}))

    @admin.display(description="error")
    def error_text(self, job: Job) -> SafeString:
        return display.preformatted(f"{job.error_type}: {job.error}" if job.error_type else job.error)

    @admin.display(description="traceback")
    def traceback_text(self, job: Job) -> SafeString | str:
        return display.preformatted(job.traceback) if job.traceback else "-"

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Job | None = None) -> HttpResponse:
        if obj is not None:
            context.update(self.history_context(obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_context(self, job: Job) -> dict[str, Any]:
        """The rows around a job: its steps, waits, children, escalations and picture."""
        steps = list(Step.objects.filter(job=job).order_by("pk").defer("input", "output"))
        children = list(
            job.children.order_by("created_at", "id")
            .only("id", "flow", "status", "state", "created_at", "finished_at")[: CHILDREN_SHOWN + 1]
        )
        return {
            "steps": steps,
            "waits": list(Wait.objects.filter(job=job).order_by("pk")),
            "children": children[:CHILDREN_SHOWN],
            "more_children": len(children) > CHILDREN_SHOWN,
            "children_url": display.changelist_url(self.admin_site.name, "job", parent=job.pk),
            "escalations": list(Escalation.objects.filter(job=job).order_by("created_at")),
            "flow_picture": flow_picture(job, {step.state for step in steps}),
        }


def flow_picture(job: Job, visited: set[str]) -> SafeString | None:
    """The job's flow as inline SVG with its path marked; None if the flow is no longer registered."""
    try:
        flow = registry.get_flow(job.flow)
    except UnknownFlowError:
        return None
    svg = graph_to_svg(
        flow.graph(),
        visited=visited,
        current=None if job.is_finished else job.state,
        failed=job.state if job.status == JobStatus.FAILED else None,
    )
    return mark_safe(svg)  # graph_to_svg escapes every state name and label itself
