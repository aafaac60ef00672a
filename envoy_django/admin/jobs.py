"""The job admin: a changelist that stays fast at a million rows, and a read-only job page.

Nothing here writes a job row: the page is read-only and the actions
(``job_actions.py``) go through the scheduler, which owns every transition.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from envoy_django import registry
from envoy_django.admin import display
from envoy_django.admin.job_actions import cancel_jobs, fail_jobs, migrate_jobs, retry_jobs
from envoy_django.admin.pagination import EstimatedCountMixin
from envoy_django.exceptions import UnknownFlowError
from envoy_django.flow.svg import graph_to_svg
from envoy_django.models import Escalation, Job, JobStatus, Step, Wait
from envoy_django.streaming import streamed_text

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# Columns the changelist shows; the checkpoint (context), payloads and
# tracebacks can be large and are not loaded for a list of a hundred jobs.
LIST_FIELDS = (
    "id", "flow", "flow_version", "status", "state", "step", "max_steps", "progress", "progress_message",
    "pending_reason", "parent", "created_at", "updated_at", "started_at", "finished_at",
)
CHILDREN_SHOWN = 100


class FlowFilter(admin.SimpleListFilter):
    """Flows from the registry: no DISTINCT over the job table to find them."""

    title = _("flow")
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
        "job_id", "flow", "version", "status_badge", "state", "step_progress", "parent_link",
        "created", "updated", "duration_display",
    )
    list_display_links = ("job_id",)
    list_filter = ("status", FlowFilter, ("created_at", admin.DateFieldListFilter))
    # The box needs search_fields; get_search_results decides the lookup.
    search_fields = ("flow",)
    search_help_text = _("A job's full id, or the start of a registered flow's name (a retired flow's full name).")
    # Matches the index envoy_job_created; the only sortable column uses it too.
    ordering = ("-created_at", "-id")
    sortable_by = ("created",)
    list_select_related = False
    show_facets = admin.ShowFacets.NEVER  # facets are COUNT(*)s per filter choice
    actions = (cancel_jobs, fail_jobs, retry_jobs, migrate_jobs)
    change_form_template = "admin/envoy_django/job/change_form.html"
    fail_jobs_template = "admin/envoy_django/job/fail_jobs.html"
    migrate_jobs_template = "admin/envoy_django/job/migrate_jobs.html"
    summary_fields = ("id", "flow_link", "status_badge", "current_state", "step_progress", "created_at", "ran")
    # Shown only when set, to keep the summary beside the picture short.
    optional_fields = {
        "pending_reason": "pending_reason", "concurrency_key": "concurrency_key",
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

    @admin.display(description=_("id"))
    def job_id(self, job: Job) -> SafeString:
        return format_html('<code title="{}">{}</code>', str(job.pk), display.short_id(job.pk))

    @admin.display(description=_("status"))
    def status_badge(self, job: Job) -> SafeString:
        """The badge; for a pending job held back (a slot, a rate limit), why, beneath it."""
        if job.status == JobStatus.PENDING and job.pending_reason:
            return format_html('{}<br><small class="envoy-reason">{}</small>', display.badge(job.status),
                               job.pending_reason)
        return display.badge(job.status)

    @admin.display(description=_("step"))
    def step_progress(self, job: Job) -> SafeString | str:
        """The step as a count; the flow's own progress beside it while the job is unfinished.

        Not a bar against max_steps, which is a ceiling, not a plan: a
        three-state flow in its second state is not 8 % done.
        """
        step = format_html('<span title="{}">{}</span>',
                           _("at most %(max)s steps") % {"max": job.max_steps}, job.step)
        if job.progress is None or job.is_finished:
            return step
        bar = display.progress_bar(job.progress, job.progress_message or f"{job.progress:.0%}",
                                   f"{job.progress:.0%}")
        return format_html("{} {}", step, bar)

    @admin.display(description=_("parent"))
    def parent_link(self, job: Job) -> SafeString | str:
        return display.job_link(self.admin_site.name, job.parent_id) if job.parent_id else "-"

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, job: Job) -> str:
        return display.timestamp(job.created_at)

    @admin.display(description=_("updated"))
    def updated(self, job: Job) -> str:
        return display.timestamp(job.updated_at)

    @admin.display(description=_("duration"))
    def duration_display(self, job: Job) -> str:
        return display.duration(job.duration)

    # --- the job page -----------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Job | None = None) -> list[tuple[StrOrPromise | None, Any]]:
        summary = list(self.summary_fields)
        if obj is not None:
            summary += [name for name, attr in self.optional_fields.items() if getattr(obj, attr)]
        fieldsets: list[tuple[StrOrPromise | None, Any]] = [
            (None, {"fields": summary}),
            (_("Input, output and data"), {"fields": self.payload_fields}),
        ]
        if obj is not None and (obj.error or obj.traceback):
            fieldsets.append((_("Error"), {"fields": self.error_fields}))
        return fieldsets

    @admin.display(description=_("version"))
    def version(self, job: Job) -> str:
        return f"v{job.flow_version}"

    @admin.display(description=_("flow"))
    def flow_link(self, job: Job) -> SafeString:
        url = display.changelist_url(self.admin_site.name, "job", flow=job.flow)
        return format_html('<a href="{}" title="{}">{}</a> <small>{}</small>', url, _("Jobs of this flow"), job.flow,
                           gettext("version %(version)s") % {"version": job.flow_version})

    @admin.display(description=_("state"))
    def current_state(self, job: Job) -> str:
        return job.state or "-"

    @admin.display(description=_("ran"))
    def ran(self, job: Job) -> str:
        """Start, end and duration on one line: the times that matter side by side."""
        if not job.started_at:
            if job.run_after:
                return gettext("not started, due %(when)s") % {"when": display.timestamp(job.run_after)}
            return gettext("not started")
        if not job.finished_at:
            return gettext("since %(start)s (%(duration)s so far)") % {
                "start": display.timestamp(job.started_at), "duration": display.duration(job.duration)}
        return (f"{display.timestamp(job.started_at)} \u2192 {localtime(job.finished_at):%H:%M:%S} "
                f"({display.duration(job.duration)})")

    @admin.display(description=_("lease"))
    def lease(self, job: Job) -> str:
        if not job.lease_owner:
            return "-"
        if not job.lease_expires_at:
            return job.lease_owner
        return gettext("%(owner)s until %(when)s") % {"owner": job.lease_owner,
                                                     "when": display.timestamp(job.lease_expires_at)}

    @admin.display(description=_("input"))
    def input_json(self, job: Job) -> SafeString:
        return display.pretty_json(job.input)

    @admin.display(description=_("output"))
    def output_json(self, job: Job) -> SafeString:
        return display.pretty_json(job.output)

    @admin.display(description=_("data"))
    def data_json(self, job: Job) -> SafeString:
        return display.pretty_json((job.context or {}).get("data", {}))

    @admin.display(description=_("error"))
    def error_text(self, job: Job) -> SafeString:
        return display.preformatted(f"{job.error_type}: {job.error}" if job.error_type else job.error)

    @admin.display(description=_("traceback"))
    def traceback_text(self, job: Job) -> SafeString | str:
        return display.preformatted(job.traceback) if job.traceback else "-"

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Job | None = None) -> HttpResponse:
        if obj is not None:
            context.update(self.history_context(obj))
            context["status_url"] = reverse(f"{self.admin_site.name}:envoy_django_job_status", args=[obj.pk])
            context["streamed_text"] = streamed_text(obj.pk) if obj.status == JobStatus.RUNNING else None
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list[Any]:
        return [
            path("<path:object_id>/status/", self.admin_site.admin_view(self.status_view),
                 name=f"{self.opts.app_label}_{self.opts.model_name}_status"),
            *super().get_urls(),
        ]

    def status_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """What the job page polls while the job runs: a few columns, cheap to read every two seconds."""
        job = self.get_queryset(request).filter(pk=_uuid_or_none(unquote(object_id))).only(
            "id", "status", "state", "step", "updated_at", "finished_at").first()
        if job is None:
            raise Http404(gettext("No job %(id)r.") % {"id": object_id})
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return JsonResponse({
            "status": job.status, "state": job.state, "step": job.step, "finished": job.is_finished,
            "updated_at": job.updated_at.isoformat(),
            # A streaming model call's text so far (None when no call is streaming).
            "stream": streamed_text(job.pk) if job.status == JobStatus.RUNNING else None,
        })

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


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def flow_picture(job: Job, visited: set[str]) -> SafeString | None:
    """The job's flow, in the job's version, as inline SVG with its path marked; None if that is not registered."""
    try:
        flow = registry.get_flow(job.flow, job.flow_version)
    except UnknownFlowError:
        return None
    svg = graph_to_svg(
        flow.graph(),
        visited=visited,
        current=None if job.is_finished else job.state,
        failed=job.state if job.status == JobStatus.FAILED else None,
    )
    return mark_safe(svg)  # graph_to_svg escapes every state name and label itself
