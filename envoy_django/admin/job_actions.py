"""Changelist actions on jobs: cancel, fail (with a reason), retry, and move to another flow version.

Each calls the scheduler once per job, in its own transaction, so one job
the scheduler refuses (already finished, not failed, ...) becomes an error
message and the others still go through. Rows are never edited here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from envoy_django import scheduler
from envoy_django.admin.forms import FailJobsForm, MigrateJobsForm
from envoy_django.exceptions import EnvoyError
from envoy_django.registry import versions_of

if TYPE_CHECKING:
    from envoy_django.admin.jobs import JobAdmin

# One request handles at most this many jobs; "select all" over a million rows must not.
ACTION_LIMIT = 500
ERRORS_SHOWN = 20


def selected_ids(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> list[Any] | None:
    ids = list(queryset.values_list("pk", flat=True)[: ACTION_LIMIT + 1])
    if len(ids) > ACTION_LIMIT:
        modeladmin.message_user(
            request, gettext("Select at most %(limit)s jobs at a time; nothing was changed.") % {"limit": ACTION_LIMIT},
            messages.ERROR,
        )
        return None
    return ids


# What each action reports, singular and plural: whole sentences, so they translate.
DONE = {
    "cancel": ("Cancelled %(count)d job.", "Cancelled %(count)d jobs."),
    "retry": ("Re-queued %(count)d job.", "Re-queued %(count)d jobs."),
    "fail": ("Failed %(count)d job.", "Failed %(count)d jobs."),
}


def apply_to_each(modeladmin: admin.ModelAdmin, request: HttpRequest, ids: list[Any],
                  operation: Callable[[Any], None], verb: str) -> None:
    done = 0
    errors: list[str] = []
    for job_id in ids:
        try:
            operation(job_id)
        except EnvoyError as exc:
            errors.append(str(exc))
        else:
            done += 1
    if done:
        singular, plural = DONE[verb]
        modeladmin.message_user(request, ngettext(singular, plural, done) % {"count": done}, messages.SUCCESS)
    for error in errors[:ERRORS_SHOWN]:
        modeladmin.message_user(request, error, messages.ERROR)
    if len(errors) > ERRORS_SHOWN:
        more = gettext("... and %(count)d more errors.") % {"count": len(errors) - ERRORS_SHOWN}
        modeladmin.message_user(request, more, messages.ERROR)


@admin.action(description=_("Cancel selected jobs (and their unfinished children)"), permissions=["operate"])
def cancel_jobs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    ids = selected_ids(modeladmin, request, queryset)
    if ids is not None:
        apply_to_each(modeladmin, request, ids, scheduler.cancel_job, "cancel")


@admin.action(description=_("Retry selected failed jobs from their last checkpoint"), permissions=["operate"])
def retry_jobs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    ids = selected_ids(modeladmin, request, queryset)
    if ids is not None:
        apply_to_each(modeladmin, request, ids, scheduler.retry_job, "retry")


@admin.action(description=_("Fail selected jobs…"), permissions=["operate"])
def fail_jobs(modeladmin: JobAdmin, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
    """Ask for a reason on an intermediate page, then fail each job with it."""
    ids = selected_ids(modeladmin, request, queryset)
    if ids is None:
        return None
    if "apply" in request.POST:
        form = FailJobsForm(request.POST)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            apply_to_each(modeladmin, request, ids, lambda job_id: scheduler.fail_job(job_id, reason), "fail")
            return None
    else:
        form = FailJobsForm(initial={"reason": gettext("failed from the admin by %(user)s") % {
            "user": request.user.get_username()}})
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Fail jobs"),
        "opts": modeladmin.opts,
        "jobs": queryset.filter(pk__in=ids).only("id", "flow", "status", "state"),
        "form": form,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media,
    }
    return TemplateResponse(request, modeladmin.fail_jobs_template, context)


@admin.action(description=_("Move selected jobs to another flow version…"), permissions=["operate"])
def migrate_jobs(modeladmin: JobAdmin, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
    """Pick the version (and renamed states) on an intermediate page, then ``scheduler.migrate_jobs``.

    The selection must be jobs of one flow on one version; of those, only
    the pending and blocking ones move, all or none.
    """
    ids = selected_ids(modeladmin, request, queryset)
    if ids is None:
        return None
    jobs = list(queryset.filter(pk__in=ids).only("id", "flow", "flow_version", "status", "state"))
    kinds = {(job.flow, job.flow_version) for job in jobs}
    if len(kinds) != 1:
        modeladmin.message_user(request, gettext("Select jobs of one flow and one version; nothing was moved."),
                                messages.ERROR)
        return None
    ((flow, version),) = kinds
    targets = [v for v in versions_of(flow) if v != version]
    if not targets:
        modeladmin.message_user(request, gettext("Flow %(flow)s has no other version registered; nothing was "
                                                 "moved.") % {"flow": flow}, messages.ERROR)
        return None
    if "apply" in request.POST:
        form = MigrateJobsForm(targets, request.POST)
        if form.is_valid():
            to_version = form.cleaned_data["to_version"]
            try:
                moved = scheduler.migrate_jobs(flow, version, to_version, state_map=form.cleaned_data["state_map"],
                                               job_ids=ids)
            except EnvoyError as exc:
                form.add_error(None, str(exc))
            else:
                modeladmin.message_user(request, ngettext(
                    "Moved %(count)d job to version %(version)s.", "Moved %(count)d jobs to version %(version)s.",
                    len(moved)) % {"count": len(moved), "version": to_version}, messages.SUCCESS)
                return None
    else:
        form = MigrateJobsForm(targets, initial={"to_version": max(targets)})
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Move jobs to another version"),
        "opts": modeladmin.opts,
        "jobs": jobs,
        "flow": flow,
        "version": version,
        "form": form,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media,
    }
    return TemplateResponse(request, modeladmin.migrate_jobs_template, context)
