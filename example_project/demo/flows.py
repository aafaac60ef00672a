"""The demo's flows, registered at start-up in every process (web, worker, shell).

The first three are the original Envoy README's examples, ported as written:
a three-state chain, conditional branching, and on_enter/on_exit. The larger
ones live in their own modules: ``review.py`` (children and a reviewer) and
``assistant.py`` (a tool-calling agent with an approval-gated tool).
"""

from __future__ import annotations

from typing import Any

from envoy_django import Context, StateFlow, register
from example_project.demo.assistant import assistant_flow
from example_project.demo.review import content_review_flow, summarize_section_flow

# --- README: a minimal flow ----------------------------------------------------------


def start(ctx: Context) -> Context:
    ctx.output("Hello!")
    return ctx


def middle(ctx: Context) -> Context:
    ctx.output(ctx.output() + " Middle!")
    return ctx


def end(ctx: Context) -> Context:
    ctx.output(ctx.output() + " End!")
    return ctx


hello_flow = StateFlow([
    {"name": "Start", "on_state": start, "router": {"next": "Middle"}},
    {"name": "Middle", "on_state": middle, "router": {"next": "End"}},
    {"name": "End", "on_state": end, "router": {"next": None}},
])

# --- README: conditional branching ---------------------------------------------------


def check(ctx: Context) -> Context:
    ctx.output(ctx.input())
    return ctx


def big_or_small(ctx: Context) -> str:
    return "Big" if ctx.output() > 10 else "Small"


def unchanged(output: Any) -> Any:
    """The README's ``o => o``: the chosen state's input is Check's output."""
    return output


def big(ctx: Context) -> Context:
    ctx.output("Big number!")
    return ctx


def small(ctx: Context) -> Context:
    ctx.output("Small number!")
    return ctx


big_or_small_flow = StateFlow([
    {"name": "Check", "on_state": check,
     "router": {"routes": {"Big": unchanged, "Small": unchanged}, "on_route": big_or_small}},
    {"name": "Big", "on_state": big, "router": {"next": None}},
    {"name": "Small", "on_state": small, "router": {"next": None}},
])

# --- README: on_enter, on_state, on_exit -----------------------------------------------


def entered(ctx: Context) -> Context:
    ctx.set("entered", True)
    return ctx


def example(ctx: Context) -> Context:
    ctx.set("ran", True)
    return ctx


def exited(ctx: Context) -> Context:
    ctx.set("exited", True)
    return ctx


def report(ctx: Context) -> Context:
    """A second state, so the output can show what on_exit of the first one did."""
    ctx.output(ctx.data())
    return ctx


enter_exit_flow = StateFlow([
    {"name": "Example", "on_enter": entered, "on_state": example, "on_exit": exited, "router": {"next": "Report"}},
    {"name": "Report", "on_state": report, "router": {"next": None}},
])

register("hello", hello_flow)
register("big-or-small", big_or_small_flow)
register("enter-exit", enter_exit_flow)
register("summarize-section", summarize_section_flow)
register("content-review", content_review_flow)
register("assistant", assistant_flow)
