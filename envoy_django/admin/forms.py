"""Admin forms: the reply to an escalation, and the reason for failing jobs.

The reply form is built from the escalation's ``inputs`` (stored by
``ctx.escalate``); the scheduler checks the reply again (``clean_reply``),
so the form is for people and the service stays the authority.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from envoy_django.flow.context import option_pairs
from envoy_django.scheduler.replies import unticked_approvals

BLANK_CHOICE = ("", "---------")


class EscalationReplyForm(forms.Form):
    """One field per input: select, comment or approve."""

    # Input ids come from flows; the prefix keeps them clear of "decision" and the CSRF token.
    prefix = "input"

    def __init__(self, inputs: list[dict[str, Any]], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inputs = inputs
        for spec in inputs:
            self.fields[spec["id"]] = input_field(spec)

    def check_decision(self, decision: str) -> None:
        """Approving needs every ``approve`` box ticked: each unticked one is an error on its field."""
        if decision != "approved":
            return
        for spec in unticked_approvals(self.inputs, self.cleaned_data):
            self.add_error(spec["id"], _("Tick this to approve, or reject."))

    def reply_values(self) -> dict[str, Any]:
        """The cleaned values keyed by input id; empty text means "not given"."""
        values: dict[str, Any] = {}
        for spec in self.inputs:
            value = self.cleaned_data.get(spec["id"])
            values[spec["id"]] = None if value == "" else value
        return values


def input_field(spec: dict[str, Any]) -> forms.Field:
    label = str(spec.get("label") or spec["id"])
    required = bool(spec.get("required"))
    kind = spec["type"]
    if kind == "select":
        # A blank first choice even when required: no option is picked for the person.
        choices = [BLANK_CHOICE, *option_pairs(spec["options"])]
        return forms.ChoiceField(label=label, choices=choices, required=required)
    if kind == "comment":
        return forms.CharField(label=label, required=required,
                               widget=forms.Textarea(attrs={"rows": 4, "cols": 60}))
    if kind == "approve":
        return forms.BooleanField(label=label, required=False)
    raise ValueError(f"escalation input {spec['id']!r} has unknown type {kind!r}")


class FailJobsForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Recorded as each job's error."),
    )


class MigrateJobsForm(forms.Form):
    """The target version and, where states were renamed, how (``scheduler.migrate_jobs``)."""

    to_version = forms.TypedChoiceField(label=_("Move to version"), coerce=int)
    state_map = forms.CharField(
        label=_("Renamed states"), required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "placeholder": "Review = Check"}),
        help_text=_("One per line, old name = new name; states with the same name in both versions need none."),
    )

    def __init__(self, versions: list[int], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["to_version"].choices = [(v, _("version %(version)s") % {"version": v}) for v in versions]  # type: ignore[attr-defined]

    def clean_state_map(self) -> dict[str, str]:
        mapping: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["state_map"].splitlines(), 1):
            if not line.strip():
                continue
            old, sep, new = line.partition("=")
            if not sep or not old.strip() or not new.strip():
                raise forms.ValidationError(
                    _("Line %(number)s: write old name = new name."), params={"number": number})
            mapping[old.strip()] = new.strip()
        return mapping
