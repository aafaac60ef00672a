"""The escalation admin: a person's queue of approvals, and the page to answer one.

The reply page is a custom admin view in the shape of Django's
``UserAdmin.user_change_password``: the form is built from the escalation's
inputs and the answer goes through ``scheduler.reply_to_escalation``, which
resumes (or fails) the job.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Literal, cast

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext as gettext_now
from django.utils.translation import gettext_lazy as _

from envoy_django import scheduler
from envoy_django.admin import display
from envoy_django.admin.forms import EscalationReplyForm
from envoy_django.admin.pagination import EstimatedCountMixin
from envoy_django.exceptions import EnvoyError, EscalationAlreadyRepliedError
from envoy_django.models import Escalation, EscalationStatus, Job
from envoy_django.scheduler import assignees

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.forms import ModelForm
    from django_stubs_ext import StrOrPromise

DECISIONS: dict[str, StrOrPromise] = {
    EscalationStatus.APPROVED: _("Approved"), EscalationStatus.REJECTED: _("Rejected"),
}


class DefaultChoiceFilter(admin.SimpleListFilter):
    """A list filter with a default choice: no parameter in the URL means ``default``.

    ``value()`` supplies the default and ``choices()`` marks it selected (and
    links to it without a parameter), so the plain list URL is filtered.
    """

    default: str

    def value(self) -> str:
        return super().value() or self.default

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            if lookup == self.default:
                query_string = changelist.get_query_string(remove=[self.parameter_name])
            else:
                query_string = changelist.get_query_string({self.parameter_name: lookup})
            yield {"selected": self.value() == lookup, "query_string": query_string, "display": title}


class AssigneeFilter(DefaultChoiceFilter):
    """Escalations asking the logged-in user, by name or through one of their groups, unless "all" is chosen."""

    title = _("assigned to")
    parameter_name = "assigned"
    default = "mine"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, StrOrPromise]]:
        return [("mine", _("me or my groups")), ("all", _("everyone"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "all":
            return queryset
        return queryset.filter(assignees.assigned_to(request.user))


class StatusFilter(DefaultChoiceFilter):
    """Pending by default: the queue is what still needs an answer."""

    title = _("status")
    parameter_name = "status"
    default = EscalationStatus.PENDING.value
    REPLIED = "replied"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, StrOrPromise]]:
        return [
            (EscalationStatus.PENDING.value, _("pending")),
            (self.REPLIED, _("replied (approved or rejected)")),
            (EscalationStatus.APPROVED.value, _("approved")),
            (EscalationStatus.REJECTED.value, _("rejected")),
            (EscalationStatus.CANCELLED.value, _("cancelled")),
            ("all", _("all")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "all":
            return queryset
        if value == self.REPLIED:
            return queryset.filter(status__in=list(DECISIONS))
        if value in EscalationStatus.values:
            return queryset.filter(status=value)
        return queryset.none()


@admin.register(Escalation)
class EscalationAdmin(EstimatedCountMixin, admin.ModelAdmin):
    list_display = ("question", "job_link", "waiting_for", "status_badge", "asked", "waited", "replied_by", "replied")
    list_display_links = None
    list_filter = (AssigneeFilter, StatusFilter)
    search_fields = ("user",)
    search_help_text = _("An escalation's or a job's full id, a username or a group name.")
    ordering = ("-created_at", "-id")
    sortable_by = ("asked",)
    show_facets = admin.ShowFacets.NEVER
    actions = None
    reply_template = "admin/envoy_django/escalation/reply.html"
    change_form_template = "admin/envoy_django/escalation/change_form.html"
    fields = ("question_text", "job_link", "waiting_for", "status_badge", "inputs_json", "on_reject",
              "created_at", "replied_by_username", "replied_at", "response_json")
    readonly_fields = fields

    class Media:
        css = {"all": ["envoy_django/admin.css"]}

    # --- permissions -------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Escalation | None = None) -> bool:
        return False  # answered on the reply page, through the scheduler

    def has_delete_permission(self, request: HttpRequest, obj: Escalation | None = None) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Escalation | None = None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm(assignees.REPLY_PERMISSION)

    def can_reply(self, request: HttpRequest, escalation: Escalation) -> bool:
        """Superusers, or holders of the reply permission who are the user asked or in the group asked."""
        return assignees.may_answer(request.user, escalation)

    # --- the list ------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("job").defer(
            "job__context", "job__input", "job__output", "job__traceback"
        )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            pk = uuid.UUID(term)
        except ValueError:
            return queryset.filter(user=term) | queryset.filter(group=term), False
        return queryset.filter(pk=pk) | queryset.filter(job_id=pk), False

    def reply_url(self, escalation: Escalation) -> str:
        return reverse(f"{self.admin_site.name}:envoy_django_escalation_reply", args=[escalation.pk])

    @admin.display(description=_("waiting for"))
    def waiting_for(self, escalation: Escalation) -> SafeString | str:
        """``alice``, ``group reviewers``, or ``alice or group reviewers``."""
        if escalation.user and escalation.group:
            return format_html("{} {} {}", escalation.user, _("or group"), escalation.group)
        if escalation.group:
            return format_html("{} {}", _("group"), escalation.group)
        return escalation.user or "-"

    @admin.display(description=_("waited"))
    def waited(self, escalation: Escalation) -> str:
        """How long the question waited: until now while pending, until the answer after."""
        end = escalation.replied_at or (timezone.now() if escalation.status == EscalationStatus.PENDING
                                        else escalation.updated_at)
        return display.duration(end - escalation.created_at)

    @admin.display(description=_("message"))
    def question(self, escalation: Escalation) -> SafeString:
        return format_html('<a href="{}">{}</a>', self.reply_url(escalation),
                           Truncator(escalation.message).chars(90))

    @admin.display(description=_("message"))
    def question_text(self, escalation: Escalation) -> SafeString:
        return format_html('<div class="envoy-message">{}</div>', escalation.message)

    @admin.display(description=_("job"))
    def job_link(self, escalation: Escalation) -> SafeString:
        job = escalation.job
        return format_html("{} {} <small>in state {}</small>", job.flow,
                           display.job_link(self.admin_site.name, job.pk), job.state)

    @admin.display(description=_("asked"), ordering="created_at")
    def asked(self, escalation: Escalation) -> str:
        return display.timestamp(escalation.created_at)

    @admin.display(description=_("replied by"))
    def replied_by(self, escalation: Escalation) -> str:
        return escalation.replied_by_username or "-"

    @admin.display(description=_("replied"))
    def replied(self, escalation: Escalation) -> str:
        return display.timestamp(escalation.replied_at)

    @admin.display(description=_("status"))
    def status_badge(self, escalation: Escalation) -> SafeString:
        return display.badge(escalation.status)

    @admin.display(description=_("inputs"))
    def inputs_json(self, escalation: Escalation) -> SafeString:
        return display.pretty_json(escalation.inputs)

    @admin.display(description=_("reply"))
    def response_json(self, escalation: Escalation) -> SafeString | str:
        return display.pretty_json(escalation.response) if escalation.response is not None else "-"

    # --- the reply page --------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        return [
            path("<path:object_id>/reply/", self.admin_site.admin_view(self.reply_view),
                 name=f"{self.opts.app_label}_{self.opts.model_name}_reply"),
            *super().get_urls(),
        ]

    def reply_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        escalation = self.get_object(request, unquote(object_id))
        if escalation is None:
            raise Http404(gettext_now("No escalation %(id)r.") % {"id": object_id})
        if not self.has_view_permission(request, escalation):
            raise PermissionDenied
        may_reply = self.can_reply(request, escalation)
        form = EscalationReplyForm(escalation.inputs)
        if request.method == "POST":
            if not may_reply:
                raise PermissionDenied
            if escalation.status != EscalationStatus.PENDING:
                not_recorded = gettext_now("Your reply was not recorded.")
                messages.warning(request, f"{already_replied(escalation)} {not_recorded}")
                return HttpResponseRedirect(self.reply_url(escalation))
            form = EscalationReplyForm(escalation.inputs, request.POST)
            decision = _decision(request.POST.get("decision", ""))
            if form.is_valid() and decision is None:
                form.add_error(None, gettext_now("Choose Approve or Reject."))
            if form.is_valid() and decision is not None:
                form.check_decision(decision)
            if form.is_valid() and decision is not None:
                try:
                    scheduler.reply_to_escalation(escalation.pk, form.reply_values(), decision,
                                                  user=cast("AbstractBaseUser", request.user))  # admin_view: logged in
                except EscalationAlreadyRepliedError as exc:  # answered meanwhile, e.g. in another tab
                    messages.warning(request, f"{exc}. {gettext_now('Your reply was not recorded.')}")
                    return HttpResponseRedirect(self.reply_url(escalation))
                except EnvoyError as exc:
                    form.add_error(None, str(exc))
                else:
                    return self.reply_done(request, escalation, decision)
        return self.render_reply(request, escalation, form, may_reply)

    def reply_done(self, request: HttpRequest, escalation: Escalation, decision: str) -> HttpResponse:
        escalation.refresh_from_db()
        self.log_change(request, escalation, f"{DECISIONS[decision]} through the reply page.")
        messages.success(request, gettext_now("%(decision)s “%(message)s” for job %(job)s.") % {
            "decision": DECISIONS[decision], "message": Truncator(escalation.message).chars(60),
            "job": display.short_id(escalation.job_id),
        })
        job_admin = self.admin_site.get_model_admin(Job) if self.admin_site.is_registered(Job) else None
        if job_admin is not None and job_admin.has_view_permission(request):
            return HttpResponseRedirect(display.change_url(self.admin_site.name, "job", escalation.job_id))
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:envoy_django_escalation_changelist"))

    def render_reply(self, request: HttpRequest, escalation: Escalation, form: EscalationReplyForm,
                     may_reply: bool) -> HttpResponse:
        pending = escalation.status == EscalationStatus.PENDING
        # The stubs ask for a ModelForm; Django's helpers take any form, as UserAdmin's password page shows.
        fieldsets = [(_("Your reply"), {"fields": list(form.fields)})]
        admin_form = helpers.AdminForm(cast("ModelForm[Any]", form), fieldsets, {})
        context = {
            **self.admin_site.each_context(request),
            "title": _("Approve or reject"),
            "opts": self.opts,
            "original": escalation,
            "escalation": escalation,
            "job": escalation.job,
            "job_url": display.change_url(self.admin_site.name, "job", escalation.job_id),
            "change_url": display.change_url(self.admin_site.name, "escalation", escalation.pk),
            "adminform": admin_form,
            "form": form,
            "errors": helpers.AdminErrorList(cast("ModelForm[Any]", form), []),
            "show_form": pending and may_reply,
            "pending": pending,
            "may_reply": may_reply,
            "already_replied": None if pending else already_replied(escalation),
            "has_view_permission": True,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.reply_template, context)


def _decision(value: str) -> Literal["approved", "rejected"] | None:
    """The button pressed, if it is one of the two."""
    if value == "approved":
        return "approved"
    if value == "rejected":
        return "rejected"
    return None


def already_replied(escalation: Escalation) -> str:
    """``This escalation was already approved by alice.``"""
    if escalation.replied_by_username:
        return gettext_now("This escalation was already %(status)s by %(user)s.") % {
            "status": escalation.status, "user": escalation.replied_by_username}
    return gettext_now("This escalation was already %(status)s.") % {"status": escalation.status}
