"""Stepping a flow by hand in a test, as the scheduler would (no Django needed)."""

from __future__ import annotations

from typing import Any

from envoy_django.flow import Context
from envoy_django.flow.results import WaitOutcome


def resolve(ctx: Context, wait_id: str, status: WaitOutcome, value: Any = None, error: str | None = None) -> Context:
    """The context after wait ``wait_id`` ended as ``status``: what the scheduler loads when a wait resolves.

    Handlers read results (``ctx.result``) and never set them, so a test
    that steps a flow through a wait resolves it here, between steps.
    """
    return Context.from_serialized(ctx.serialize(), {wait_id: {"status": status, "value": value, "error": error}})
