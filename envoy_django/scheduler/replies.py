"""Checking a person's reply against the inputs an escalation asked for."""

from __future__ import annotations

from typing import Any

from envoy_django.exceptions import EscalationError
from envoy_django.flow.context import option_pairs
from envoy_django.flow.values import short_repr


def clean_reply(escalation_id: Any, inputs: list[dict], values: Any) -> dict[str, Any]:
    """Return the reply with every input present; raise naming the input at fault.

    select: one of the offered option keys; comment: text; approve: a boolean.
    """
    where = f"reply to escalation {escalation_id}"
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise EscalationError(f"{where}: values must be a dict of input id to value, got {type(values).__name__}")
    known = {spec["id"]: spec for spec in inputs}
    unknown = sorted(set(values) - set(known), key=short_repr)  # keys may be of any type: never compare them
    if unknown:
        raise EscalationError(
            f"{where}: unknown input {short_repr(unknown[0])} (inputs: {', '.join(known) or 'none'})"
        )
    cleaned: dict[str, Any] = {}
    for input_id, spec in known.items():
        value = values.get(input_id)
        kind = spec["type"]
        if value is None or value == "":
            if spec.get("required"):
                raise EscalationError(f"{where}: input {input_id!r} ({spec['label']}) is required")
            cleaned[input_id] = False if kind == "approve" else None
            continue
        if kind == "select":
            options = [option for option, _ in option_pairs(spec["options"])]
            if not isinstance(value, str) or value not in options:
                offered = ", ".join(options)
                raise EscalationError(
                    f"{where}: {short_repr(value)} is not an option of input {input_id!r} (options: {offered})")
        elif kind == "comment":
            if not isinstance(value, str):
                raise EscalationError(f"{where}: input {input_id!r} takes text, got {type(value).__name__}")
        elif kind == "approve":
            if not isinstance(value, bool):
                raise EscalationError(f"{where}: input {input_id!r} takes true or false, got {short_repr(value)}")
        cleaned[input_id] = value
    return cleaned


def unticked_approvals(inputs: list[dict], cleaned: dict[str, Any]) -> list[dict]:
    """The ``approve`` inputs a reply left unticked.

    An ``approve`` input is what a person ticks to say yes to this very
    thing ("Run transfer"): approving with one unticked is refused;
    rejecting with it unticked is how a rejection reads.
    """
    return [spec for spec in inputs if spec["type"] == "approve" and cleaned.get(spec["id"]) is not True]


def check_approval(escalation_id: Any, inputs: list[dict], cleaned: dict[str, Any], status: str) -> None:
    if status != "approved":
        return
    for spec in unticked_approvals(inputs, cleaned):
        raise EscalationError(
            f"reply to escalation {escalation_id}: approving needs input {spec['id']!r} ({spec['label']}) "
            "ticked; tick it, or reject"
        )
